"""The run directory: where it goes, what it holds, and writing it so nothing is half-done.

A run is assembled in a hidden staging directory next to its final place
(``runs/.<name>.partial``) and renamed into place only when it finished, so a directory named
like a run is always a complete run. Every file inside is written to a temporary file first and
then renamed over its destination: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from nntrain.errors import NntrainError, RunExistsError, UsageError
from nntrain.runs.guard import (RunLock, beside, check_replaceable, clear_staging, complete_staged,
                              remove_temporaries)

CONFIG = "config.yaml"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
MANIFEST = "manifest.json"
LABELS = "labels.json"

# Refuse to start when less than this is free: a failed save at the end loses the whole run.
MIN_FREE_BYTES = 16 << 20


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through a temporary sibling, fsync it, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files should look normal
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            before_sync(path, fh)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def before_sync(path: Path, fh: BinaryIO) -> None:
    """Called with each file's destination and its open temporary file once the bytes are
    written, before fsync: a seam for the fault-injection tests (tests/faults.py), which replace
    it to kill the process or fail the write half-way. Does nothing."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BackgroundWriter:
    """Writes done on one background thread, in order, so that training goes on while a
    checkpoint reaches the disk (serializing and three fsyncs take tens of milliseconds, more
    than a whole tiny epoch). submit() never waits: a write still waiting its turn is replaced
    by the newer one (it would be superseded anyway), so while training the files on disk are
    the newest whose write has finished (each of them whole), behind by the epochs that ran
    meanwhile: one, or a few when writes take longer than epochs. wait() and close() write the
    last one. A failed write drops the one waiting and is raised by the next submit() or by
    wait()."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: Callable[[], None] | None = None
        self._busy = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._raise_error()
            self._waiting = job  # replaces one still waiting its turn
            if self._thread is None:
                self._closing = False
                # A daemon, so that a process that never reaches close() (killed by a second
                # Ctrl-C, say) still exits; close() waits for the last write.
                self._thread = threading.Thread(target=self._work, name="nntrain-write",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._waiting is None and not self._closing:
                    self._cond.wait()
                if self._waiting is None:
                    return
                job, self._waiting, self._busy = self._waiting, None, True
            error = None
            try:
                job()
            except BaseException as exc:  # handed to the training thread, raised there
                error = exc
            with self._cond:
                self._busy = False
                if error is not None:
                    self._error = self._error or error
                    self._waiting = None  # nothing is written after a failed write
                self._cond.notify_all()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        """Block until every submitted write is done; raise a failed one's error."""
        with self._cond:
            while self._waiting is not None or self._busy:
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        """wait(), then stop the thread."""
        try:
            self.wait()
        finally:
            with self._cond:
                thread, self._thread = self._thread, None
                self._closing = True
                self._cond.notify_all()
            if thread is not None:
                thread.join()

    def settle(self) -> None:
        """close(), ignoring a failed write: the caller is handling a failure already."""
        with contextlib.suppress(Exception):
            self.close()


class RunDir:
    """A run being written. Files go to ``staging``; ``commit`` moves it to ``path``.

    A resumed run that is in its place already has ``staging == path``.
    """

    def __init__(self, path: Path, staging: Path, force: bool, lock: RunLock | None = None):
        self.path = path
        self.staging = staging
        self.force = force
        self.lock = lock  # this process's hold on the run name (runs/guard.py)
        self.notes: list[str] = []  # what the user should hear about (a discarded run, say)
        self.kept_beside = False  # commit() kept an unfinished attempt beside an old run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run, to resume: RUN_DIR itself, or its hidden staging directory when the
        run was killed before it could be moved into place."""
        path = Path(path)
        staged = None
        if path.name.startswith(".") and path.name.endswith(".partial"):
            staged, path = path, path.with_name(path.name[1:-len(".partial")])
        with contextlib.suppress(OSError):  # a read-only runs directory: open it as it is
            complete_staged(path)  # a kill between the 'finished' manifest and the rename
        if staged is not None and (staged / MANIFEST).is_file():
            return cls(path, staged, False)
        staging = path.with_name(f".{path.name}.partial")
        if (path / MANIFEST).is_file():
            return cls(path, path, False)
        if (staging / MANIFEST).is_file():
            return cls(path, staging, False)
        raise UsageError(f"{path}: not a run directory (no {MANIFEST})")

    def take(self) -> None:
        """Own the run name (to resume it): refused while another process does; then the
        temporaries of writes a kill cut short go."""
        try:
            self.lock = RunLock.take(self.path)
        except OSError as exc:
            raise UsageError(f"{self.path.parent}: cannot write here: {exc.strerror}") from None
        remove_temporaries(self.staging)

    @classmethod
    def create(cls, root: str | Path, name: str, *, explicit_name: bool, force: bool = False,
               need_bytes: int = 0) -> "RunDir":
        """Reserve a new run directory under root; nothing existing is touched."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{root}: cannot create the runs directory: {exc.strerror}") from None
        path = root / name
        try:
            if explicit_name:
                lock = RunLock.take(path)  # before anything of the name is looked at
            else:
                path, lock = _default_path(root, name)
        except OSError as exc:
            raise UsageError(f"{root}: cannot write here: {exc.strerror}") from None
        try:
            check_replaceable(path, force)
            note = clear_staging(path, force)
            staging = root / f".{path.name}.partial"
            try:
                staging.mkdir()
            except OSError as exc:
                raise UsageError(f"{root}: cannot write here: {exc.strerror}") from None
            free = shutil.disk_usage(staging).free
            if free < MIN_FREE_BYTES + need_bytes:
                shutil.rmtree(staging, ignore_errors=True)
                raise NntrainError(f"{root}: only {free >> 20} MiB free on disk; the run needs "
                                   f"about {(MIN_FREE_BYTES + need_bytes) >> 20} MiB")
        except BaseException:
            lock.release()
            raise
        run = cls(path, staging, force, lock)
        run.notes += [note] if note else []
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.staging / name

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.file(name), text)

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def save_model(self, model: Any) -> None:
        """model.save writes in place; save to a temporary name and rename instead."""
        final = self.file(MODEL)
        tmp = final.with_name(f".tmp-{os.getpid()}-{MODEL}")
        try:
            model.save(tmp)
            with open(tmp, "r+b") as fh:
                fh.seek(0, os.SEEK_END)
                before_sync(final, fh)
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def commit(self, status: str = "finished") -> Path:
        """Move the run into place. An old run of the name is replaced (with --force) only by
        a finished one; an attempt that did not finish is kept beside it, in
        ``NAME.<status>-<time>``, which becomes ``self.path``."""
        remove_temporaries(self.staging)
        if self.staging == self.path:
            return self.path
        if self.path.exists():
            if status != "finished":
                self.path = beside(self.path, status)
                self.kept_beside = True
                os.replace(self.staging, self.path)
                self.staging = self.path
                return self.path
            if not self.force:
                raise RunExistsError(f"{self.path}: appeared while training; the finished run "
                                     f"is kept in {self.staging}")
            trash = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}")
            os.replace(self.path, trash)
            os.replace(self.staging, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.staging, self.path)
        self.staging = self.path
        return self.path

    def discard(self) -> None:
        if self.staging != self.path:
            shutil.rmtree(self.staging, ignore_errors=True)

    def release(self) -> None:
        """Let go of the run name (the kernel does it too, when the process ends)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _default_path(root: Path, name: str) -> tuple[Path, RunLock]:
    """Default names are unique per run: config name plus the local start time, and a number
    when that is taken (or being taken by another process right now)."""
    stem = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = root / stem, 2
    while True:
        if not (path.exists() or (root / f".{path.name}.partial").exists()):
            lock = RunLock.try_take(path)
            if lock is not None:
                if not (path.exists() or (root / f".{path.name}.partial").exists()):
                    return path, lock
                lock.release()
        path, n = root / f"{stem}-{n}", n + 1


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)

