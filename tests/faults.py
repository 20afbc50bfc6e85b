"""Run the nntrain CLI with a fault injected into its file writes, for tests/test_resume.py:

    python tests/faults.py kill:NAME:N ARGS...    SIGKILL in the middle of the N-th write of
                                                 file NAME (its temporary file half-written)
    python tests/faults.py enospc:NAME:N ARGS...  that write fails as a full disk would
    python tests/faults.py kill:step:N ARGS...    SIGKILL right after the N-th training step
                                                 (counted across epochs): a worker of a
                                                 multi-worker run lost at a known step
    python tests/faults.py --runs JSON            several runs in this one process, one after
                                                 the other: JSON is a list of [SPEC or null,
                                                 ARGS...]; after each, "faults.py: exit CODE"
                                                 on stderr

or, in a test's own process, monkeypatch.setattr(rundir, "before_sync", hook(SPEC)).

--runs saves a process (and its ~5 s of importing Keras) for each run that a signal stops
without ending the process: only a SIGKILL needs a process to itself, and it comes last.

The faults in writes are installed through runs.rundir.before_sync, the step kill through the
on_batch callback that the CLI hands to training, so nntrain itself carries no fault-injection
code.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from nntrain.cli.app import main
from nntrain.runs import rundir


def install(spec: str) -> None:
    if spec.split(":")[:2] == ["kill", "step"]:
        _kill_after_step(int(spec.split(":")[2]))
    else:
        rundir.before_sync = hook(spec)


def _kill_after_step(nth: int) -> None:
    """SIGKILL this process when its ``nth`` training step ends, through the on_batch
    callback that `nntrain train` passes to nntrain.training.train.train."""
    from nntrain.training import train as training

    run = training.train

    def train(*args, on_batch=None, **kwargs):
        steps = 0

        def batch(step: int, per_epoch: int, logs: dict) -> None:
            nonlocal steps
            steps += 1
            if steps == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            if on_batch is not None:
                on_batch(step, per_epoch, logs)

        return run(*args, on_batch=batch, **kwargs)

    training.train = train


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


def runs(plan: list[list]) -> int:
    """Each [SPEC or None, ARGS...] of ``plan`` as `nntrain ARGS` with that fault; the last
    exit code."""
    quiet = rundir.before_sync
    code = 0
    for spec, *args in plan:
        if "keras" in sys.modules:  # Keras numbers layers and variables per session: each run
            sys.modules["keras"].backend.clear_session()  # starts as in a fresh process
        rundir.before_sync = quiet if spec is None else hook(spec)
        code = main([str(a) for a in args])
        print(f"faults.py: exit {code}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    if sys.argv[1] == "--runs":
        sys.exit(runs(json.loads(sys.argv[2])))
    install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
