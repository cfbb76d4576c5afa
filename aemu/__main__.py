"""``python -m aemu`` is the ``aemu`` command."""
from aemu.cli import main

if __name__ == "__main__":
    main()
