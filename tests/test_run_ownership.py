"""Nothing lost, round 2 (issue #18): who owns a run name, what --force may replace and when,
and the states a kill can leave, which every command agrees on."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY


def fake_run(path: Path, status: str, *, checkpoint: bool = False, model: bool = False) -> Path:
    """A run directory as nntrain writes one, without training (for what only reads it)."""
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(
        {"name": path.name, "status": status, "versions": {"nntrain": "0"}}))
    if checkpoint:
        (path / "checkpoint.npz").write_bytes(b"checkpoint")
    if model:
        (path / "model.keras").write_bytes(b"model")
    return path


@pytest.fixture
def config(write):
    return write("tiny.yaml", TINY + "  plots: false\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real finished run of TINY, copied by the tests that need a loadable model."""
    import shutil

    d = tmp_path_factory.mktemp("finished")
    (d / "tiny.yaml").write_text(TINY + "  plots: false\n")
    from nntrain.cli.app import main

    with pytest.MonkeyPatch.context() as mp:  # in this process: no TensorFlow import to pay
        mp.chdir(d)
        assert main(["train", "tiny.yaml", "-q"]) == 0

    def copy(to: Path) -> Path:
        shutil.copytree(d / "runs" / "tiny", to)
        return to
    return copy


# --- --force -------------------------------------------------------------------------------

def test_force_never_deletes_a_directory_that_is_not_a_run(cli, config, tmp_path):
    notes = tmp_path / "runs" / "notes"
    notes.mkdir(parents=True)
    (notes / "todo.txt").write_text("precious")
    res = cli("train", config, "--set", "output.name=notes", "--force")
    assert res.code == 2
    assert "runs/notes: exists and is a directory that is not an nntrain run" in res.err
    assert "not even with --force" in res.err and len(res.err.splitlines()) == 1
    assert (notes / "todo.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes"]


@pytest.mark.parametrize("make", ["data dir", "file", "foreign manifest"])
def test_run_dir_create_refuses_what_is_not_a_run(tmp_path, make):
    from nntrain.errors import UsageError
    from nntrain.runs.rundir import RunDir

    target = tmp_path / "data"
    if make == "file":
        target.write_text("x")
    else:
        target.mkdir()
        (target / ("manifest.json" if make == "foreign manifest" else "rows.csv")).write_text(
            '{"status": "finished"}')
    with pytest.raises(UsageError, match="is a (directory|file) that is not an nntrain run"):
        RunDir.create(tmp_path, "data", explicit_name=True, force=True)
    assert target.exists() and not (tmp_path / ".data.partial").exists()


def test_force_keeps_the_old_run_when_the_new_one_is_interrupted(config, tmp_path,
                                                                 monkeypatch):
    from nntrain.config import load_config
    from nntrain.errors import Interrupted
    from nntrain.training.loop import StopRequest
    from nntrain.training.train import train

    monkeypatch.chdir(tmp_path)
    old = fake_run(tmp_path / "runs" / "tiny", "finished", model=True)
    stop = StopRequest()

    def on_epoch(epoch, total, logs, seconds):
        stop.request(signal.SIGINT)  # Ctrl-C during the first of two epochs

    with pytest.raises(Interrupted, match=r"the run is saved in runs/tiny\.interrupted-\d{8}"):
        train(load_config(config), force=True, stop=stop, on_epoch=on_epoch)
    assert (old / "model.keras").read_bytes() == b"model", "the old run is untouched"
    [kept] = (tmp_path / "runs").glob("tiny.interrupted-*")
    assert json.loads((kept / "manifest.json").read_text())["status"] == "interrupted"
    assert (kept / "checkpoint.npz").exists()
    assert not list((tmp_path / "runs").glob(".*")), "no staging directory or lock left"


def test_force_keeps_the_old_run_when_the_disk_fills_at_the_model_save(cli, config, tmp_path,
                                                                       monkeypatch):
    import keras

    import faults
    from nntrain.runs import rundir

    cli("train", config, "-q")
    # Layer names as a new process has them: the checkpoint records them and resume checks.
    keras.backend.clear_session()
    before = (tmp_path / "runs" / "tiny" / "model.keras").read_bytes()
    monkeypatch.setattr(rundir, "before_sync", rundir.before_sync)  # restored afterwards
    faults.install("enospc:model.keras:1")
    res = cli("train", config, "--force", "-q")
    assert res.code == 1 and "internal error" not in res.err
    [line] = res.err.splitlines()
    assert "model.keras: No space left on device; the run is kept in runs/tiny.failed-" in line
    assert "continue it with: nntrain train --resume runs/tiny.failed-" in line
    assert (tmp_path / "runs" / "tiny" / "model.keras").read_bytes() == before
    [kept] = (tmp_path / "runs").glob("tiny.failed-*")
    assert json.loads((kept / "manifest.json").read_text())["status"] == "failed"
    faults.install("enospc:model.keras:0")  # a write that never comes: no fault
    keras.backend.clear_session()
    res = cli("train", "--resume", kept, "-q")
    assert res.code == 0, res.err
    assert (kept / "model.keras").exists()


# --- one process per run name ----------------------------------------------------------------

def test_a_second_run_of_the_same_name_is_refused_naming_the_holder(cli, config, tmp_path):
    from nntrain.runs.guard import RunLock

    (tmp_path / "runs").mkdir()
    held = RunLock.take(tmp_path / "runs" / "tiny")
    try:
        res = cli("train", config)
        assert res.code == 2
        assert f"another nntrain process (PID {os.getpid()}) is working on this run" in res.err
        assert len(res.err.splitlines()) == 1
        assert not (tmp_path / "runs" / ".tiny.partial").exists()
        res = cli("train", "--resume", "runs/tiny")
        assert res.code == 2 and "not a run directory" in res.err
    finally:
        held.release()


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path):
    from nntrain.errors import UsageError
    from nntrain.runs.guard import RunLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from nntrain.runs.guard import RunLock; RunLock.take(Path(sys.argv[1])); "
         "print('locked', flush=True); time.sleep(60)", str(tmp_path / "race")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UsageError, match=rf"race: another nntrain process \(PID {holder.pid}\)"):
        RunLock.take(tmp_path / "race")
    holder.kill()
    holder.wait()
    lock = RunLock.take(tmp_path / "race")  # no stale lock after SIGKILL
    lock.release()
    assert not (tmp_path / ".race.lock").exists()


def test_a_plain_start_never_deletes_a_resumable_run(tmp_path):
    from nntrain.errors import UsageError
    from nntrain.runs.rundir import RunDir

    staged = fake_run(tmp_path / ".tiny.partial", "running", checkpoint=True)
    with pytest.raises(UsageError, match=r"was stopped before it finished .*nntrain train "
                                         r"--resume .*/tiny; or pass --force to discard it"):
        RunDir.create(tmp_path, "tiny", explicit_name=True)
    assert (staged / "checkpoint.npz").exists()
    placed = fake_run(tmp_path / "other", "interrupted", checkpoint=True)
    with pytest.raises(UsageError, match=r"can be resumed: nntrain train --resume .*/other"):
        RunDir.create(tmp_path, "other", explicit_name=True)
    assert (placed / "checkpoint.npz").exists()
    run = RunDir.create(tmp_path, "tiny", explicit_name=True, force=True)
    assert run.notes == [f"--force: discarded the unfinished run that was staged in {staged}"]
    assert not (staged / "checkpoint.npz").exists()
    run.release()


def test_a_staging_directory_without_a_checkpoint_is_cleared(tmp_path):
    from nntrain.runs.rundir import RunDir

    (tmp_path / ".tiny.partial").mkdir()
    (tmp_path / ".tiny.partial" / "config.yaml").write_text("x")
    run = RunDir.create(tmp_path, "tiny", explicit_name=True)
    assert list(run.staging.iterdir()) == []
    run.release()


# --- what a kill leaves ----------------------------------------------------------------------

def test_ctrl_c_before_training_began_keeps_nothing_and_says_so(config, tmp_path, monkeypatch):
    from nntrain.config import load_config
    from nntrain.errors import Interrupted
    from nntrain.training.loop import StopRequest
    from nntrain.training.train import train

    monkeypatch.chdir(tmp_path)
    stop = StopRequest()
    stop.request(signal.SIGINT)  # Ctrl-C while TensorFlow was loading
    with pytest.raises(Interrupted, match="before training began; nothing was kept; start it"):
        train(load_config(config), stop=stop)
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_finished_run_left_staged_by_a_kill_is_completed_by_every_command(cli, finished,
                                                                            config, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    finished(runs / ".a.partial")
    res = cli("runs", "--json")
    assert [(r["name"], r["path"], r["status"]) for r in json.loads(res.out)] == [
        ("a", "runs/a", "finished")]
    finished(runs / ".b.partial")
    res = cli("eval", "runs/b", "-q")
    assert res.code == 0, res.err
    assert (runs / "b" / "model.keras").exists()
    finished(runs / ".c.partial")
    res = cli("train", "--resume", "runs/c")
    assert res.code == 2 and "finished all 2 epochs" in res.err
    assert (runs / "c").is_dir() and not (runs / ".c.partial").exists()
    finished(runs / ".tiny.partial")
    res = cli("train", config)
    assert res.code == 2 and "runs/tiny: a run with this name exists already" in res.err
    assert (runs / "tiny" / "model.keras").exists()


def test_temporaries_of_killed_writes_go_when_a_run_finishes_or_resumes(tmp_path):
    from nntrain.runs.rundir import RunDir

    run = RunDir.create(tmp_path, "t", explicit_name=True)
    for name in (".checkpoint.npz.abc123.tmp", ".tmp-4242-model.keras", "keep.txt"):
        run.file(name).write_text("half")
    run.commit("interrupted")
    run.release()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["keep.txt"]
    fake = fake_run(tmp_path / "u", "interrupted", checkpoint=True)
    (fake / ".manifest.json.x1.tmp").write_text("half")
    opened = RunDir.open(fake)
    opened.take()
    opened.release()
    assert not (fake / ".manifest.json.x1.tmp").exists()


# --- the environment fails -------------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EIO])
def test_environment_errors_become_one_located_line(code):
    from nntrain.runs.guard import environment_error

    error = environment_error(OSError(code, os.strerror(code), "runs/x/model.keras"),
                              "the run is kept in runs/x")
    assert str(error) == f"runs/x/model.keras: {os.strerror(code)}; the run is kept in runs/x"
    assert error.exit_code == 1
    assert environment_error(OSError(errno.EBADF, "bad"), "") is None  # a bug stays one


def test_a_second_ctrl_c_during_the_final_save_leaves_an_interrupted_run(config, tmp_path,
                                                                        monkeypatch):
    from nntrain.training import train as training
    from nntrain.config import load_config
    from nntrain.errors import Interrupted

    monkeypatch.chdir(tmp_path)

    def ctrl_c(*args):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(training, "evaluate_splits", ctrl_c)
    with pytest.raises(Interrupted, match=r"interrupted; the run is kept in runs/tiny with its "
                                          r"checkpoint after epoch 2; continue it with: "
                                          r"nntrain train --resume runs/tiny"):
        training.train(load_config(config))
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["distribution"] == {"strategy": "none", "replicas": 1}


def test_a_diverged_epoch_gets_its_jsonl_line(cli, write):
    config = write("sine.yaml", """
        data: {source: generate, generator: sine, samples: 100}
        model: {layers: [{type: dense, units: 1}]}
        training: {loss: mse, optimizer: {name: sgd, learning_rate: 1.0e+30}, epochs: 3}
        output: {name: boom, plots: false}
        """)
    res = cli("train", config, "--jsonl", "-q")
    assert res.code == 3, res.err
    [line] = res.out.splitlines()
    event = json.loads(line)
    assert event["event"] == "epoch" and event["epoch"] == 1
    assert event["loss"] is None, "a non-finite loss is null in JSON"
