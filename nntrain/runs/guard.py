"""Who owns a run name, what may replace what, and what a kill can leave behind.

- One process at a time works on a run name: it holds an exclusive ``flock`` on
  ``DIR/.NAME.lock``, taken before the staging directory is touched. The kernel drops the lock
  when the process dies, SIGKILL included, so a lock is never stale (a killed process leaves the
  file, which the next owner takes over). The file holds the owner's PID, for the message.
- ``--force`` replaces only a directory that is an nntrain run (its manifest says so), and only
  when the new run finishes; an attempt that does not finish is kept beside the old run.
- A kill can leave a staged run whose manifest says finished (killed between the last write and
  the rename): every command that looks at the name completes it.
- Temporary files of killed writes are removed when a run resumes or finishes.
- A failed write caused by the environment (full disk, permissions, read-only or failing disk)
  becomes one line that names the path, says what was kept and how to go on.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from nntrain.errors import NntrainError, UsageError

MANIFEST = "manifest.json"
MODEL = "model.keras"
CHECKPOINT = "checkpoint.npz"
PARTIAL = ".partial"
# The errors a write gets from its environment rather than from a bug.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                      errno.EDQUOT, errno.EFBIG}


class RunBusyError(UsageError):
    """Another process is working on this run name."""


def staging_of(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL}")


def lock_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class RunLock:
    """An exclusive lock on one run name, held until release() or the process's end."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path) -> "RunLock":
        """Lock the run ``path`` (``DIR/NAME``) or raise RunBusyError naming the holder."""
        lock = cls.try_take(path)
        if lock is None:
            holder = _holder(lock_file(path))
            raise RunBusyError(f"{path}: another nntrain process{holder} is working on this run "
                               "right now; wait for it to end, or choose another output.name")
        return lock

    @classmethod
    def try_take(cls, path: Path) -> "RunLock | None":
        """The lock, or None when another process holds it."""
        file = lock_file(path)
        while True:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # The holder before us may have removed the file between our open and our
                # flock: then we hold a lock on a file nobody else can find; take a fresh one.
                same = os.fstat(fd).st_ino == os.stat(file).st_ino
            except BlockingIOError:
                os.close(fd)
                return None
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file (while still holding it, see try_take) and let go."""
        if self._fd is not None:
            lock_file(self.path).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _holder(file: Path) -> str:
    try:
        pid = file.read_text().strip()
    except OSError:
        return ""
    return f" (PID {pid})" if pid.isdigit() else ""


def read_manifest(run: Path) -> dict[str, Any] | None:
    """The manifest of an nntrain run directory, or None when ``run`` is not one."""
    try:
        with open(run / MANIFEST, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict) \
            or "nntrain" not in data["versions"] or "status" not in data:
        return None
    return data


def is_resumable(run: Path) -> bool:
    """An unfinished run with a checkpoint: --resume continues it."""
    manifest = read_manifest(run)
    return manifest is not None and manifest["status"] != "finished" \
        and (run / CHECKPOINT).is_file()


def is_finished(run: Path) -> bool:
    manifest = read_manifest(run)
    return manifest is not None and manifest["status"] == "finished" and (run / MODEL).is_file()


def beside(path: Path, status: str) -> Path:
    """A free name next to ``path`` for an attempt that is kept beside it:
    ``NAME.interrupted-20261129-153000``."""
    stem = f"{path.name}.{status}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, n = path.with_name(stem), 2
    while out.exists():
        out, n = path.with_name(f"{stem}-{n}"), n + 1
    return out


def complete_staged(path: Path) -> Path | None:
    """Finish what a kill between the 'finished' manifest and the rename left: move a staged
    finished run into place. Returns where it went, or None when there was nothing to do (or
    another process owns the name right now)."""
    staging = staging_of(path)
    if not is_finished(staging):
        return None
    lock = RunLock.try_take(path) if path.parent.is_dir() else None
    if lock is None:
        return None
    try:
        if not is_finished(staging):  # completed by another process meanwhile
            return None
        target = path
        if path.exists() or path.is_symlink():
            # Killed before --force swapped the old run out; keeping both loses nothing.
            target = beside(path, "finished")
        remove_temporaries(staging)
        os.replace(staging, target)
        for trash in path.parent.glob(f".{path.name}.replaced-*"):
            shutil.rmtree(trash, ignore_errors=True)
        return target
    finally:
        lock.release()


def complete_all_staged(root: Path) -> None:
    """complete_staged for every staged run under root (for `nntrain runs`)."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL) and entry.is_dir():
            try:
                complete_staged(root / entry.name[1:-len(PARTIAL)])
            except OSError:
                pass  # a read-only runs directory: list it as it is


def remove_temporaries(run: Path) -> list[Path]:
    """Delete what killed writes leave in a run directory: ``.FILE.XXXX.tmp`` (atomic_write)
    and ``.tmp-PID-model.keras`` (save_model). Only call it while holding the run's lock."""
    removed = []
    for pattern in (".*.tmp", ".tmp-*-" + MODEL):
        for tmp in run.glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def check_replaceable(path: Path, force: bool) -> None:
    """What may stand at a new run's place: nothing, or with --force an nntrain run."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not path.is_dir() or read_manifest(path) is None:
        what = "a directory" if path.is_dir() and not path.is_symlink() else "a file"
        raise UsageError(f"{path}: exists and is {what} that is not an nntrain run (it has no "
                         f"nntrain {MANIFEST}); nntrain never replaces it, not even with "
                         "--force; choose another output.name or output.dir")
    if force:
        return
    if is_resumable(path):
        raise UsageError(f"{path}: a run with this name stopped before it finished and can be "
                         f"resumed: nntrain train --resume {path}; or pass --force to replace it "
                         "(only when the new run finishes)")
    from nntrain.errors import RunExistsError

    raise RunExistsError(f"{path}: a run with this name exists already; choose another "
                         "output.name or pass --force to replace it (only when the new run "
                         "finishes)")


def clear_staging(path: Path, force: bool) -> str | None:
    """Before a new run of ``path`` is staged (the lock held): a staged run that finished is
    completed first (then it stands at ``path``); a resumable one is refused without --force
    and discarded with it (returned: a note to tell the user); anything else staged there is
    what a run killed before its first checkpoint left, and goes."""
    staging = staging_of(path)
    if not staging.exists():
        return None
    if is_finished(staging):
        # Not complete_staged: the lock is ours already.
        target = path if not path.exists() else beside(path, "finished")
        remove_temporaries(staging)
        os.replace(staging, target)
        if target == path:
            check_replaceable(path, force)
        return None
    if is_resumable(staging):
        if not force:
            raise UsageError(f"{path}: a run with this name was stopped before it finished "
                             f"(kept in {staging}); continue it with: nntrain train --resume "
                             f"{path}; or pass --force to discard it and start again")
        shutil.rmtree(staging)
        return f"--force: discarded the unfinished run that was staged in {staging}"
    shutil.rmtree(staging)
    return None


def environment_error(exc: OSError, kept: str) -> NntrainError | None:
    """A one-line error for an OSError the environment caused, or None for any other.

    kept: what was kept and how to go on, e.g. 'the run is kept in runs/x after epoch 2; ...'."""
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = exc.filename or "a file of the run"
    what = exc.strerror or os.strerror(exc.errno)
    if exc.errno == errno.EFBIG:
        what += " (the shell's file size limit, ulimit -f?)"
    return NntrainError(f"{where}: {what}; {kept}")
