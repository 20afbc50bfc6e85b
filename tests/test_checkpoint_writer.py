"""The checkpoint writer thread (runs.rundir.BackgroundWriter): training never waits for it, a
write still waiting its turn gives way to a newer one, the newest is always written in the
end, and a failed write reaches the training thread. No training: plain jobs."""

from __future__ import annotations

import errno
import threading

import pytest

from nntrain.runs.rundir import BackgroundWriter


def test_a_waiting_write_gives_way_to_a_newer_one_and_the_newest_is_written():
    writer = BackgroundWriter()
    busy, release = threading.Event(), threading.Event()
    written: list[int] = []

    def slow() -> None:  # an fsync that takes longer than an epoch
        busy.set()
        release.wait(30)
        written.append(1)

    writer.submit(slow)
    assert busy.wait(30)
    for epoch in (2, 3, 4):  # submitted while 1 is still being written: none of them waits
        writer.submit(lambda epoch=epoch: written.append(epoch))
    release.set()
    writer.close()
    assert written == [1, 4]  # 2 and 3 gave way to 4


def test_a_failed_write_is_raised_on_the_training_thread_and_nothing_after_it_is_written():
    writer = BackgroundWriter()
    busy, release = threading.Event(), threading.Event()
    written: list[int] = []

    def full_disk() -> None:
        busy.set()
        release.wait(30)
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(full_disk)
    assert busy.wait(30)
    writer.submit(lambda: written.append(2))  # waiting when the first fails: dropped
    release.set()
    with pytest.raises(OSError, match="No space left on device"):
        writer.wait()
    writer.close()
    assert written == []


def test_the_writer_can_be_used_again_after_close():
    writer = BackgroundWriter()
    written: list[int] = []
    for run in (1, 2):
        writer.submit(lambda run=run: written.append(run))
        writer.close()
    assert written == [1, 2]
