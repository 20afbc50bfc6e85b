"""Data: synthetic generators, file readers, splits."""
