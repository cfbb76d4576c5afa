"""Byte transports: socket endpoints now; channels, files and multifd with savevm."""
