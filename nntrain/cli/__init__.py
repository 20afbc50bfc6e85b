"""The command line: commands, rendering, Unix signal and pipe plumbing."""
