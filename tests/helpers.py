"""Shared by the tests that need a process of their own: `nntrain` in a subprocess (plain or
through tests/faults.py), waiting for it with a timeout, free ports, and a deadline for
in-process calls. A hang fails the test by its timeout, never by a stopwatch assert."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAULTS = str(ROOT / "tests" / "faults.py")  # nntrain with a fault injected in its writes


def env(**extra: str | None) -> dict[str, str]:
    """This environment, with this tree's nntrain first on the path (for `python -m nntrain`
    from any working directory); a None in ``extra`` leaves that variable out."""
    merged = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    return {k: v for k, v in merged.items() if v is not None}


def start(cwd: Path, *args: object, fault: str | None = None,
          extra_env: dict[str, str | None] | None = None) -> subprocess.Popen:
    """`nntrain ARGS` in a process of its own; with ``fault`` (kill:NAME:N, enospc:NAME:N),
    through tests/faults.py."""
    command = ["-m", "nntrain"] if fault is None else [FAULTS, fault]
    return subprocess.Popen([sys.executable, *command, *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**(extra_env or {})))


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); fails the test, with the stderr so far, after
    ``timeout`` seconds."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"nntrain {' '.join(proc.args[2:])} did not finish within {timeout:g}s; "
                    f"stderr:\n{err}")
    return proc.returncode, out, err


def nntrain(cwd: Path, *args: object, fault: str | None = None,
            timeout: float = 300) -> tuple[int, str, str]:
    """Run `nntrain ARGS` in a process of its own to the end: (exit code, stdout, stderr)."""
    return finish(start(cwd, *args, fault=fault), timeout)


def free_ports(n: int) -> list[int]:
    """n ports on 127.0.0.1 that were free a moment ago (the OS does not reuse them at once)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail the test if the block runs longer than ``seconds`` (SIGALRM, main thread only):
    for bounds that tell a refused input from one being chewed on, not for speed."""

    def expired(signum, frame):
        pytest.fail(f"{what} took more than {seconds:g}s")  # a BaseException: nntrain's
        # `except Exception` at the CLI boundary lets it through

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
