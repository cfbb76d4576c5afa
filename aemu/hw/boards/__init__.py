"""Board files shipped with aemu (package data: ``default.toml``)."""
