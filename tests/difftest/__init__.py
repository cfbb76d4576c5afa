"""Seeded random-program differential testing of aemu against cr16-elf-run-trace."""
