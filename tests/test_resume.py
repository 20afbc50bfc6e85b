"""Nothing lost: interrupts, kills at any moment, resume bit for bit, full disks."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import FAULTS, env, finish, start

# Enough steps per epoch (700, about 0.3 s) that a signal lands inside an epoch; Dropout makes the
# random state part of what must be restored.
CONFIG = """
data: {source: generate, generator: moons, samples: 16000, noise: 0.2,
       split: {validation: 0.1, test: 0.2}}
model:
  layers:
    - {type: dense, units: 32, activation: relu}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: 3
  batch_size: 16
output: {plots: false}
"""


def in_one_process(cwd: Path, *runs: list) -> subprocess.Popen:
    """Several `nntrain ARGS` runs in one process of its own, one after the other, each
    [FAULT or None, ARGS...] (tests/faults.py --runs); a run a signal stops leaves the process
    alive for the next, so only a SIGKILL, which ends it, needs a process to itself."""
    return subprocess.Popen([sys.executable, FAULTS, "--runs", json.dumps(runs)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())


def weights(run: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(run / "model.keras").get_weights()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with the config and one uninterrupted run to compare against. Trained in
    this process, as the resumes are: only the runs that a signal or SIGKILL ends need a process
    of their own, and a run is the same number for number in any process."""
    from nntrain.cli.app import main

    d = tmp_path_factory.mktemp("resume")
    (d / "run.yaml").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        assert main(["train", "run.yaml", "-q", "--set", "output.name=straight"]) == 0
    return d


@pytest.fixture
def here(work, monkeypatch, capsys):
    """`nntrain ARGS` in this process, in the work directory: (exit code, stdout, stderr)."""
    from nntrain.cli.app import main

    monkeypatch.chdir(work)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def assert_same_run(a: Path, b: Path) -> None:
    for x, y in zip(weights(a), weights(b), strict=True):
        assert np.array_equal(x, y), "weights differ"
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


def wait_for_epoch(proc: subprocess.Popen, epoch: int) -> str:
    """Read the process's stderr up to the line of ``epoch``'s end; what was read."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"epoch {epoch}/"):
            return "".join(seen)
    raise AssertionError("training ended before the epoch was reached")


def assert_resumes_after_sigkill(work: Path, here, name: str, rc: int) -> None:
    """The run ``name`` was SIGKILLed (exit status ``rc``) before it finished: it is still
    staged, and resuming it gives the uninterrupted run's weights, metrics and history."""
    assert rc == -signal.SIGKILL
    staging = work / "runs" / f".{name}.partial"
    assert staging.is_dir() and not (work / "runs" / name).exists()
    rc, out, err = here("train", "--resume", f"runs/{name}")
    assert rc == 0, err
    assert not staging.exists()
    assert_same_run(work / "runs" / "straight", work / "runs" / name)


def killed_name(fault: str) -> str:
    return "kill-" + fault.replace(":", "-")


@pytest.mark.parametrize("signum, code, fault", [(signal.SIGINT, 130, "kill:checkpoint.npz:2"),
                                                 (signal.SIGTERM, 143, "kill:manifest.json:3")])
def test_signal_saves_a_checkpoint_and_resume_is_bit_exact(work, here, signum, code, fault):
    """A signal inside epoch 2 stops the run with a checkpoint, and the resume finishes it bit
    for bit. The signal leaves the process alive: its next run, SIGKILLed in the middle of a
    write (``fault``), shares it, and resumes to the same weights too."""
    name, killed = f"sig{int(signum)}", killed_name(fault)
    proc = in_one_process(work, [None, "train", "run.yaml", "--set", f"output.name={name}"],
                          [fault, "train", "run.yaml", "--set", f"output.name={killed}"])
    seen = wait_for_epoch(proc, 1)
    time.sleep(0.05)  # into epoch 2
    proc.send_signal(signum)
    rc, out, err = finish(proc)
    stopped, marker, after = (seen + err).partition("faults.py: exit ")
    assert marker, f"the first run did not end:\n{seen + err}"
    assert int(after.split()[0]) == code, stopped
    assert "resume" in stopped and out == ""  # nothing on stdout from either run
    run = work / "runs" / name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert not (run / "model.keras").exists()
    from nntrain.training.checkpoint import load

    state = load(run / "checkpoint.npz").state
    assert state.epoch == 1 and 0 < state.step < 700, "the signal should land inside epoch 2"
    rc2, out2, err2 = here("train", "--resume", f"runs/{name}")
    assert rc2 == 0, err2
    assert out2.strip() == f"runs/{name}"
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    assert_same_run(work / "runs" / "straight", run)

    assert "faults.py: exit" not in after, "the SIGKILLed run ended on its own"
    assert_resumes_after_sigkill(work, here, killed, rc)


def test_sigkill_at_any_moment_resumes_to_the_same_weights(work, here):
    """Killed in the middle of writing the model, at the very end (the kills in the middle of
    a checkpoint's and the manifest's writes are in the signal tests, after their signal)."""
    fault = "kill:model.keras:1"
    rc, _, err = finish(start(work, "train", "run.yaml", "--set",
                              f"output.name={killed_name(fault)}", fault=fault))
    assert_resumes_after_sigkill(work, here, killed_name(fault), rc)


def test_sigkill_in_the_middle_of_an_epoch(work, here):
    proc = start(work, "train", "run.yaml", "--set", "output.name=midkill")
    wait_for_epoch(proc, 1)
    time.sleep(0.1)
    proc.kill()
    proc.communicate()
    rc, _, err = here("train", "--resume", "runs/midkill")
    assert rc == 0, err
    assert_same_run(work / "runs" / "straight", work / "runs" / "midkill")


def test_resume_refuses_other_changes_and_extends_epochs(work, here):
    shutil.copytree(work / "runs" / "straight", work / "runs" / "longer")
    rc, _, err = here("train", "--resume", "runs/longer", "--set", "training.batch_size=64",
                      "--set", "training.epochs=6")
    assert rc == 2
    assert "only training.epochs (and where it runs) may change" in err
    assert "training.batch_size: 16 -> 64" in err
    rc, _, err = here("train", "--resume", "runs/longer")
    assert rc == 2 and "training.epochs=N" in err
    before = (work / "runs" / "longer" / "history.csv").read_text()
    rc, _, err = here("train", "--resume", "runs/longer", "--set", "training.epochs=4")
    assert rc == 0, err
    history = (work / "runs" / "longer" / "history.csv").read_text()
    assert history.startswith(before) and len(history.splitlines()) == 5


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(work, here, monkeypatch):
    from faults import hook
    from nntrain.runs import rundir

    # A full disk raises, as it would in a process of its own: no SIGKILL, no subprocess.
    with monkeypatch.context() as m:
        m.setattr(rundir, "before_sync", hook("enospc:checkpoint.npz:3"))
        rc, _, err = here("train", "run.yaml", "--set", "output.name=full")
    assert rc == 1
    assert "No space left on device" in err and "Traceback" not in err
    run = work / "runs" / "full"
    manifest = json.loads((run / "manifest.json").read_text())
    # The failed write was the third; the one before it (epoch 2, or a later one if the
    # writer replaced a waiting write) is what the run kept, and what the manifest says.
    from nntrain.training.checkpoint import load

    kept = load(run / "checkpoint.npz").state.epoch
    assert manifest["status"] == "failed" and manifest["epochs_completed"] == kept >= 2
    assert not list(run.glob(".*.tmp")), "no half-written temporaries"
    rc, _, err = here("train", "--resume", "runs/full")
    assert rc == 0, err
    assert_same_run(work / "runs" / "straight", run)


def test_resume_needs_a_run_directory(cli, tmp_path):
    res = cli("train", "--resume", "nowhere")
    assert res.code == 2 and "not a run directory" in res.err


@pytest.mark.parametrize("at_epoch, finished", [(1, False), (2, True)])
def test_a_stop_after_the_last_epoch_finishes_the_run(write, tmp_path, monkeypatch, at_epoch,
                                                      finished):
    """A stop request that lands after the last epoch's last step (in its validation, say)
    leaves nothing to resume: the run finishes. One after an earlier epoch interrupts it."""
    from conftest import TINY
    from nntrain.config import load_config
    from nntrain.errors import Interrupted
    from nntrain.training.loop import StopRequest
    from nntrain.training.train import train

    monkeypatch.chdir(tmp_path)
    stop = StopRequest()

    def on_epoch(epoch, total, logs, seconds):
        if epoch == at_epoch:
            stop.request(signal.SIGINT)

    loaded = load_config(write("run.yaml", TINY), ["output.plots=false"])
    if finished:
        run, result, _ = train(loaded, stop=stop, on_epoch=on_epoch)
        assert result.epochs_run == 2 and (run.path / "model.keras").exists()
    else:
        with pytest.raises(Interrupted, match=r"interrupted after epoch 1 \(step 0\); the run "
                           r"is saved in .*tiny; continue it with: nntrain train --resume"):
            train(loaded, stop=stop, on_epoch=on_epoch)
    status = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())["status"]
    assert status == ("finished" if finished else "interrupted")


def test_resume_in_a_process_that_built_other_models_first(cli, write, tmp_path):
    """Keras numbers unnamed variables (seed generators, optimizer slots) per process: a run
    resumed in a process that built other models first (a sweep worker, a notebook) must still
    find its checkpoint's variables. Trained in this process too: the models built between
    the two move the counters on all the same."""
    import keras

    from conftest import TINY

    config = write("run.yaml", TINY.replace(
        "- {type: dense, units: 8, activation: relu}",
        "- {type: dense, units: 8, activation: relu}\n    - {type: dropout, rate: 0.2}"))
    res = cli("train", config, "-q", "--set", "output.plots=false")
    assert res.code == 0, res.err
    for _ in range(3):  # other models first: the counters move on
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(8), keras.layers.Dropout(0.2),
                          keras.layers.Dense(1)]).compile(optimizer="adam", loss="mse")
    res = cli("train", "--resume", "runs/tiny", "--set", "training.epochs=3", "-q")
    assert res.code == 0, res.err
    history = (tmp_path / "runs/tiny/history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
