"""Live migration: precopy over tcp:, unix:, fd: and file: URIs, with
multifd channels, zstd, auto-converge and a return path (docs/migration.md)."""
from aemu.migration.manager import MigrationManager
from aemu.migration.options import OptionError, Options
from aemu.migration.outgoing import MigrationError
from aemu.migration.status import Status

__all__ = ["MigrationError", "MigrationManager", "OptionError", "Options", "Status"]
