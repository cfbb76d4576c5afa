"""aemu: an asyncio event-driven emulator for the CompactRISC CR16C CPU."""
__version__ = "0.1.0"
