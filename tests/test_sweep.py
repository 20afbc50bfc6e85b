"""nntrain sweep: Optuna trials as run directories, resumable, shared by several workers."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, nntrain

BASE = """
data:
  source: generate
  generator: moons
  samples: 200
  split: {validation: 0.2, test: 0.2}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: adam
  metrics: [accuracy]
  epochs: 2
  batch_size: 32
output: {plots: false}
"""

SWEEP = """
config: base.yaml
trials: 6
metric: validation.accuracy
seed: 3
space:
  training.optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
  model.layers[0].units: {int: [2, 16]}
  model.layers[0].activation: {choice: [relu, tanh]}
"""


# For the tests that look at no picture: Optuna's pictures of the study are not drawn.
NO_PLOTS = "plots: false\n"


def _sweep(write, text: str = SWEEP, base: str = BASE, trials: int | None = None) -> Path:
    """base.yaml and s.yaml; ``trials`` replaces SWEEP's 6 (each trial trains a model: the
    tests ask for as few as their assertions need)."""
    write("base.yaml", base)
    if trials is not None:
        text = text.replace("trials: 6", f"trials: {trials}")
    return write("s.yaml", text)


def _board(directory: Path) -> list[dict[str, str]]:
    with open(directory / "leaderboard.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _study_trials(directory: Path, name: str = "s") -> list:
    import optuna

    return optuna.load_study(study_name=name,
                             storage=f"sqlite:///{directory / 'study.db'}").get_trials()


def test_sweep_with_pruning_writes_leaderboard_and_a_best_yaml_that_reproduces(cli, write,
                                                                               tmp_path):
    # The median pruner, comparing from the third trial and from the first epoch, with 3
    # epochs: seeded TPE and deterministic training prune the same trials every time. 4 trials:
    # with seed 3 three finish (importances.png needs two) and the fourth is pruned at epoch 1.
    path = _sweep(write, SWEEP + "pruner: {type: median, startup_trials: 2, warmup_epochs: 0}"
                  + "\nset: {training.epochs: 3}\n", trials=4)
    res = cli("sweep", path, "--json")
    assert res.code == 0, res.err
    board = json.loads(res.out)
    rows = board["leaderboard"]
    states = [r["state"] for r in rows]
    assert len(rows) == 4 and set(states) <= {"finished", "pruned"}, rows
    assert "pruned" in states, "the median pruner stopped no trial"
    # Best first: finished trials by validation accuracy, then the pruned ones.
    finished = [r["validation.accuracy"] for r in rows if r["state"] == "finished"]
    assert finished == sorted(finished, reverse=True)
    assert states == sorted(states, key=lambda s: s != "finished")
    for r in rows:
        run = Path(r["run"])
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "finished" and (run / "model.keras").is_file()
        if r["state"] == "pruned":  # a pruned trial is a finished run with fewer epochs
            assert r["epochs"] < 3 and manifest["epochs_completed"] == r["epochs"]
            assert r["note"].startswith("pruned after epoch")
    directory = tmp_path / "s"
    csv_rows = _board(directory)
    assert [int(r["trial"]) for r in csv_rows] == [r["trial"] for r in rows]
    assert list(csv_rows[0])[:5] == ["trial", "state", "training.optimizer.learning_rate",
                                     "model.layers[0].units", "model.layers[0].activation"]
    for png in ("history.png", "parallel_coordinates.png", "importances.png"):
        assert (directory / png).read_bytes()[:4] == b"\x89PNG"
    assert "best trial on the test rows" in res.err and "leaderboard" in res.err
    # The progress lines: one per trial.
    assert sum(line.startswith("trial ") for line in res.err.splitlines()) == 4

    # best.yaml trains as is and gets the best trial's validation accuracy exactly.
    best = rows[0]
    trained = cli("train", directory / "best.yaml", "--json", "-q")
    assert trained.code == 0, trained.err
    again = json.loads(trained.out)["metrics"]["validation"]["accuracy"]
    assert again == best["validation.accuracy"]
    assert Path(json.loads(trained.out)["run_dir"]).parent == Path("runs")  # the base config's

    # Run again: the sweep is complete, nothing trains, the same leaderboard comes back. With
    # plots: false now (not part of the search: no "the sweep changed"), the pictures go.
    path.write_text(path.read_text() + NO_PLOTS)
    rerun = cli("sweep", path, "--json")
    assert rerun.code == 0, rerun.err
    assert json.loads(rerun.out)["leaderboard"] == rows
    assert not any(line.startswith("trial ") for line in rerun.err.splitlines())
    assert not list(directory.glob("*.png"))
    # `nntrain sweep DIR` shows the leaderboard from the study.
    shown = cli("sweep", directory, "--json")
    assert shown.code == 0 and json.loads(shown.out)["leaderboard"] == rows


def test_a_sweep_killed_mid_trial_continues_with_the_same_parameters(cli, write, tmp_path):
    # 3 trials: trial 0 finishes, trial 1 is killed and retried, and one more comes after it.
    path = _sweep(write, SWEEP + NO_PLOTS, trials=3)
    # SIGKILL in the middle of the 4th checkpoint write of the process: trial 1's second epoch
    # (trial 0 wrote two), after its first epoch's checkpoint.
    code, _, err = nntrain(tmp_path, "sweep", path, fault="kill:checkpoint.npz:4")
    assert code == -9, err
    trials = _study_trials(tmp_path / "s")
    assert [t.state.name for t in trials] == ["COMPLETE", "RUNNING"]
    lost = trials[1].params

    # The rerun needs no process of its own (only the SIGKILL does): it runs in this one.
    rerun = cli("sweep", path, "--json")
    assert rerun.code == 0, rerun.err
    assert "trial 2 (again, was 1)" in rerun.err
    rows = json.loads(rerun.out)["leaderboard"]
    assert len(rows) == 3 and {r["state"] for r in rows} == {"finished"}
    runs = [r["run"] for r in rows]
    assert len(set(runs)) == 3  # no trial twice
    retried = next(r for r in rows if r["run"].endswith("trial-0001"))
    assert retried["params"] == lost  # the same parameters, in the same run directory
    manifest = json.loads((Path(retried["run"]) / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumes"]) == 1
    trials = _study_trials(tmp_path / "s")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3
    assert not list((tmp_path / "s").glob(".*.partial"))
    assert not list((tmp_path / "s").glob("*.png"))  # plots: false


def _sweep_here(capfd, monkeypatch, tmp_path, *args) -> tuple[int, str, str]:
    """`nntrain sweep ARGS` in this process (worker 0), in tmp_path: (exit code, stdout, stderr),
    the stderr of the worker processes it starts included (they write on file descriptor 2)."""
    from nntrain.cli.app import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers run this tree's `python -m nntrain`
    capfd.readouterr()
    code = main(["sweep", *map(str, args)])
    out, err = capfd.readouterr()
    return code, out, err


def test_two_workers_share_one_sqlite_study(write, tmp_path, capfd, monkeypatch):
    path = _sweep(write, SWEEP + NO_PLOTS, trials=4)
    code, out, err = _sweep_here(capfd, monkeypatch, tmp_path, path, "--jobs", "2", "--json")
    assert code == 0, err
    _check_shared(json.loads(out)["leaderboard"], _study_trials(tmp_path / "s"), 4)
    assert "[worker 0] trial" in err and "[worker 1] trial" in err


def _check_shared(rows: list[dict], trials: list, wanted: int) -> None:
    assert len(rows) == wanted and {r["state"] for r in rows} == {"finished"}
    assert len({r["run"] for r in rows}) == wanted
    counted = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == wanted  # exactly the requested number, none twice
    assert len({t.user_attrs["where"]["pid"] for t in counted}) == 2  # both workers trained


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres():
    """A real PostgreSQL server on 127.0.0.1, in a temporary directory, stopped at the end.
    initdb refuses to run as root, so the server runs as 'nobody' then."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (pg_ctl) on PATH or in /usr/lib/postgresql; "
                    ".ci/run installs the Debian package")
    pytest.importorskip("psycopg2", reason="psycopg2 is in the test extra")
    root = Path(tempfile.mkdtemp(prefix="nntrain-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        os.chmod(root, 0o700)
        as_user = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "nntrain",
                        "--auth=trust"], check=True, capture_output=True)
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-w", "-l", root / "log",
                        "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"],
                       check=True, capture_output=True)
        yield f"postgresql://nntrain@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(write, tmp_path, postgres, capfd, monkeypatch):
    path = _sweep(write, SWEEP + NO_PLOTS, trials=4)
    code, out, err = _sweep_here(capfd, monkeypatch, tmp_path, path, "--jobs", "2", "--json",
                                 "--storage", postgres)
    assert code == 0, err
    import optuna

    from nntrain.sweep.run import open_storage  # postgresql:// through psycopg2

    trials = optuna.load_study(study_name="s", storage=open_storage(postgres)).get_trials()
    _check_shared(json.loads(out)["leaderboard"], trials, 4)
    assert not (tmp_path / "s" / "study.db").exists()  # the study is in PostgreSQL
    # The directory remembers the storage (without a password) for `nntrain sweep DIR`.
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["storage"] == postgres


@pytest.mark.parametrize("text, where, message", [
    (SWEEP.replace("trials:", "trails:"), "s.yaml:2:1: trails",
     "unknown key 'trails' (did you mean 'trials'?)"),
    (SWEEP.replace("model.layers[0].units:", "model.layers[0].unit:"),
     "s.yaml:7:3: space.model.layers[0].unit", "model.layers[0] has no 'unit' (did you mean "
     "'units'?)"),
    (SWEEP.replace("training.optimizer.learning_rate:", "training.optimiser.learning_rate:"),
     "s.yaml:6:3: space.training.optimiser", "training has no 'optimiser' (did you mean 'optimizer'?)"),
    (SWEEP.replace("{int: [2, 16]}", "{int: [-4, 16]}"),
     "s.yaml:7:33: space.model.layers[0].units.int[0]", "expected a positive integer, got -4"),
    (SWEEP.replace("[relu, tanh]", "[relu, tahn]"), "s.yaml:8:47: space.model.layers[0]."
     "activation.choice[1]", "unknown activation 'tahn' (did you mean 'tanh'?)"),
    (SWEEP.replace("{log_uniform: [0.0001, 0.1]}", "{log_uniform: [0.1, 0.001]}"),
     "s.yaml:6:51: space.training.optimizer.learning_rate.log_uniform",
     "expected low < high, got [0.1, 0.001]"),
    (SWEEP.replace("{int: [2, 16]}", "{range: [2, 16]}"), "s.yaml:7:34: "
     "space.model.layers[0].units.range", "{int: [low, high]}"),
    (SWEEP.replace("validation.accuracy", "test.accuracy"), "s.yaml:3:9: metric",
     "the test rows never select"),
    (SWEEP.replace("validation.accuracy", "validation.auc"), "s.yaml:3:9: metric",
     "the base config logs no metric 'auc'"),
    (SWEEP + "sampler: grid\n", "s.yaml:6:51", "the grid sampler needs countable values"),
    (SWEEP + "set: {output.dir: elsewhere}\n", "s.yaml:9:7: set.output.dir",
     "only output.plots may be set"),
    (SWEEP + "space: {}\n", "s.yaml:9:1", "duplicate key 'space'"),
    (SWEEP.replace("config: base.yaml", "config: nothere.yaml"), "nothere.yaml",
     "no such config file"),
])
def test_hostile_sweep_files_are_refused_at_their_place(cli, write, tmp_path, text, where,
                                                        message):
    path = _sweep(write, text)
    res = cli("sweep", path)
    assert res.code == 2, res.err
    assert res.out == ""
    line = res.err.strip().splitlines()[0]
    assert where in line and message in line, line
    assert not (tmp_path / "s").exists()  # nothing written


def test_a_changed_search_space_is_refused_on_resume_unless_forced(write, tmp_path):
    from nntrain.errors import UsageError
    from nntrain.sweep.run import open_study
    from nntrain.sweep.spec import load_sweep

    path = _sweep(write)
    open_study(load_sweep(path), None)
    write("s.yaml", SWEEP.replace("[2, 16]", "[2, 32]"))
    with pytest.raises(UsageError, match=r"the sweep changed since it started "
                       r"\(space\.model\.layers\[0\]\.units\.int: \[2, 16\] -> \[2, 32\]\)"):
        open_study(load_sweep(path), None)
    study = open_study(load_sweep(path), None, force=True)
    assert study.user_attrs["sweep"]["space"]["model.layers[0].units"] == {"int": [2, 32]}


def test_a_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(cli, write,
                                                                          tmp_path):
    # Keras checks a layer's initializer only when it builds the model: the trial that
    # samples a bad one fails with that reason, and the sweep goes on to one that finishes.
    # (seed 1: the grid sampler tries the bad initializer first.)
    text = SWEEP.replace("trials: 6", "trials: 1").replace("seed: 3", "seed: 1") + \
        "sampler: grid\n" + NO_PLOTS
    text = text.replace("{log_uniform: [0.0001, 0.1]}", "{choice: [0.01]}") \
        .replace("{int: [2, 16]}", "{choice: [4]}").replace(
            "model.layers[0].activation: {choice: [relu, tanh]}",
            "model.layers[0].kernel_initializer: {choice: [no_such_init, glorot_uniform]}")
    path = _sweep(write, text)
    res = cli("sweep", path, "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["leaderboard"]
    assert [r["state"] for r in rows] == ["finished", "failed"]
    assert "no_such_init" in rows[1]["note"], rows
    assert "FAILED" in res.err


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_workers_with_one_seed_propose_different_trials_and_trial_n_is_reproducible(
        write, tmp_path, sampler):
    # Two workers on one study, each with the sweep's seed (as on two machines, where both
    # are worker 0): asked in turn, they must not propose the same parameters. A one-worker
    # sweep elsewhere, same seed, draws the same parameters for each trial number.
    from nntrain.sweep.run import distributions, open_study
    from nntrain.sweep.spec import load_sweep

    spec = load_sweep(_sweep(write, SWEEP + f"sampler: {sampler}\n"), None)
    first, second = open_study(spec, None), open_study(spec, None)
    shared = [study.ask(distributions(spec)) for study in (first, second, first, second)]
    proposed = [tuple(sorted(t.params.items())) for t in shared]
    assert len(set(proposed)) == 4, proposed
    alone = load_sweep(tmp_path / "s.yaml", tmp_path / "alone")
    study = open_study(alone, None)
    again = [tuple(sorted(study.ask(distributions(alone)).params.items())) for _ in range(4)]
    assert again == proposed
