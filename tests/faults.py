"""Run the nntrain CLI with a fault injected into its file writes, for tests/test_resume.py:

    python tests/faults.py kill:NAME:N ARGS...    SIGKILL in the middle of the N-th write of
                                                 file NAME (its temporary file half-written)
    python tests/faults.py enospc:NAME:N ARGS...  that write fails as a full disk would

or, in a test's own process, monkeypatch.setattr(rundir, "before_sync", hook(SPEC)).

The fault is installed through runs.rundir.before_sync, so nntrain's own write path carries no
fault-injection code.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from nntrain.cli.app import main
from nntrain.runs import rundir


def install(spec: str) -> None:
    rundir.before_sync = hook(spec)


def hook(spec: str):
    """The before_sync hook for ``spec`` (kill:NAME:N or enospc:NAME:N); tests that need no
    SIGKILL install it in their own process, with monkeypatch."""
    action, name, nth = spec.split(":")
    writes = 0

    def fault(path: Path, fh: BinaryIO) -> None:
        nonlocal writes
        if path.name != name:
            return
        writes += 1
        if writes != int(nth):
            return
        if action == "kill":
            fh.truncate(max(1, fh.tell() // 2))
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return fault


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
