"""Unix plumbing of the commands: signals, and a reader of standard output that goes away."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nntrain.errors import UsageError


@contextlib.contextmanager
def signals(handler: Any) -> Iterator[None]:
    """Route SIGINT and SIGTERM to handler for the duration of the block."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def until_the_reader_leaves() -> Iterator[None]:
    """For commands whose output is data on stdout: when the reader of the pipe goes away
    (`nntrain predict ... | head`), end as Unix tools do, by SIGPIPE (exit status 141 in the
    shell) with no message, rather than with Python's BrokenPipeError."""
    if not hasattr(signal, "SIGPIPE"):
        yield
        return
    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        yield
        sys.stdout.flush()
    finally:
        signal.signal(signal.SIGPIPE, previous)


def stdout_gone() -> None:
    """The reader of stdout left: send what is still to be written nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


# 141: the exit status of a process that SIGPIPE ended, which a pipeline's reader expects.
EXIT_PIPE = 128 + getattr(signal, "SIGPIPE", 13)


def write_new_file(path: Path, data: bytes, force: bool) -> None:
    """Write a file the user named, atomically, never over an existing one without --force."""
    from nntrain.runs.rundir import atomic_write

    if path.exists() and not force:
        raise UsageError(f"{path}: exists already; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such directory")
    atomic_write(path, lambda fh: fh.write(data))
