"""The CR16C CPU: the C core and its Python face."""
from .core import PAGE_SIZE, REG_NAMES, Cpu, DirtyLog, Exit, MmioBusError, Psr, Vector

__all__ = ["Cpu", "DirtyLog", "Exit", "MmioBusError", "PAGE_SIZE", "Psr", "REG_NAMES", "Vector"]
