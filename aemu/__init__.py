"""aemu: an asyncio event-driven emulator for the CompactRISC CR16C CPU."""
__version__ = "0.1.0"

# `pytest -p aemu` loads the pytest11 entry point "aemu" (aemu.testing.plugin);
# where there is no entry point (a source tree on sys.path) it registers this
# package instead, and pytest then imports the plugin from here.
pytest_plugins = ["aemu.testing.plugin"]
