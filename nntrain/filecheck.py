"""Input files must be regular files: a FIFO with no writer blocks a reader for ever, and a
device such as /dev/zero never ends (it would fill the memory). Checked with stat, before the
file is opened (opening a FIFO for reading already blocks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def not_regular(path: str | Path, wanted: str = "a file, or - to read standard input",
                ) -> str | None:
    """Why ``path`` cannot be read as an input file, or None when it can (or does not exist:
    the opener's own error says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None  # the callers have their own words for a directory
    what = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
    return f"is {what}, not a regular file; give {wanted}"
