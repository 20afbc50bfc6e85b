"""Distributed training: tf.distribute mirrored over logical CPU devices and two workers on
127.0.0.1, keras.distribution's DataParallel on JAX over two CPU devices, and bad cluster
specs. The runs are in processes of their own: logical devices and a worker's server are fixed
for the life of a process (the runs on split devices share one, see runs_in_one_process)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import TINY
from helpers import env as helper_env
from helpers import finish, free_ports, start

# Every training row in one order (no shuffle) so that the runs compare number for number.
CONFIG = TINY.replace("batch_size: 32", "batch_size: 32\n  shuffle: false") + \
    "  plots: false\n"


# tf.distribute's strategies: these runs pin TensorFlow, whatever KERAS_BACKEND the suite
# runs on (multi_worker needs it; mirrored on JAX is tested below with --backend jax).
TF = {"KERAS_BACKEND": "tensorflow"}


@pytest.fixture
def work(tmp_path):
    (tmp_path / "run.yaml").write_text(CONFIG)
    return tmp_path


def recorded(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# Several runs in one process, each as `nntrain ARGS` would run it, stopping at the first that
# fails. Devices are fixed when the backend starts, so the run that splits the CPU goes first;
# a plain run after it trains on one device (no strategy) as in a process of its own. One
# process instead of one per run: each start costs seconds of imports.
RUNS = """
import json, sys
from nntrain.cli.app import main
for args in json.loads(sys.argv[1]):
    code = main(args)
    if code:
        sys.exit(code)
    import keras  # after the first run: nntrain chooses the backend before Keras starts
    keras.backend.clear_session()  # as in a fresh process: Keras numbers layers per session
print("jax imported:", "jax" in sys.modules)
"""


def runs_in_one_process(cwd: Path, *runs: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNS, json.dumps(runs)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=helper_env(**(env or {})))


def assert_same_metrics(m1: dict, m2: dict) -> None:
    assert m1.keys() == m2.keys() == {"train", "validation", "test"}
    for split in m1:
        for name, value in m1[split].items():
            assert m2[split][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (split, name)


# Two epochs of 9 steps each (140 training rows, 16 a step): in the lost-worker test below,
# worker 1 is lost at the fourth step of the second, after an epoch that the resume must keep.
LONG = CONFIG.replace("batch_size: 32", "batch_size: 16").replace("name: tiny", "name: long")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """One TensorFlow process: run.yaml mirrored over two CPU devices (runs/two) and on one
    (runs/one), and long.yaml mirrored (runs/straight): two replicas of 8 rows a step sum
    their gradients as two workers do, so it is the lost-worker test's uninterrupted run.
    Then `nntrain validate` of a multi-worker config whose workers are not there."""
    work = tmp_path_factory.mktemp("mirrored")
    (work / "run.yaml").write_text(CONFIG)
    (work / "long.yaml").write_text(LONG)
    two = ["--strategy", "mirrored", "--set", "distribution.cpu_devices=2"]
    nobody = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    code, out, err = finish(runs_in_one_process(
        work, ["train", "run.yaml", "-q", *two, "--set", "output.name=two"],
        ["train", "long.yaml", "-q", *two, "--set", "output.name=straight"],
        ["train", "run.yaml", "-q", "--set", "output.name=one"],
        ["validate", "run.yaml", "--set", "distribution.strategy=multi_worker", "--set",
         f"distribution.workers=[{nobody}]", "--set", "distribution.worker_index=0", "--set",
         "distribution.timeout=1"], env=TF))
    assert code == 0, err
    return work, out, err


def test_validate_checks_a_multi_worker_config_without_its_workers(mirrored):
    """A config for a cluster is checked before the cluster exists (it said that worker 1
    did not answer)."""
    _, _, err = mirrored
    assert "multi_worker: the other workers were not contacted" in err
    assert err.strip().splitlines()[-1] == "run.yaml: OK (binary, 140 training rows)"


def test_mirrored_over_two_cpus_matches_one_device(mirrored):
    work, out, _ = mirrored
    # TensorFlow's TFLite module imports JAX when it can, for a converter nntrain never uses
    # (a second of start-up); nntrain hides it.
    assert out.splitlines()[-1] == "jax imported: False"
    assert_same_metrics(recorded(work / "runs" / "one"), recorded(work / "runs" / "two"))
    config = (work / "runs" / "two" / "config.yaml").read_text()
    assert "strategy: mirrored" in config
    manifest = json.loads((work / "runs" / "two" / "manifest.json").read_text())
    assert manifest["distribution"] == {"strategy": "mirrored", "replicas": 2}
    assert manifest["backend"] == "tensorflow"
    one = json.loads((work / "runs" / "one" / "manifest.json").read_text())
    assert one["distribution"] == {"strategy": "none", "replicas": 1}


# Keras's DataParallel on JAX: 141 training rows make an odd last batch (13 rows), which
# cannot be split across two devices; validation and test passes end unevenly too.
ON_JAX = ["--backend", "jax", "--set", "data.samples=201"]
MIRRORED_ON_JAX = [*ON_JAX, "--strategy", "mirrored", "--set", "distribution.cpu_devices=2"]


def test_mirrored_on_jax_matches_one_device_and_resumes_bit_for_bit(work):
    """Over two CPU devices, the metrics of one device. Killed while writing its second
    checkpoint and resumed on two devices again: the same weights, history and metrics as the
    run that was never stopped (Dropout included)."""
    (work / "drop.yaml").write_text(CONFIG.replace(
        "    - {type: dense, units: 1", "    - {type: dropout, rate: 0.3}\n"
        "    - {type: dense, units: 1").replace("epochs: 2", "epochs: 3"))
    # Killed first, alone; then one process resumes it on two devices and trains the rest.
    code, _, err = finish(start(work, "train", "drop.yaml", *MIRRORED_ON_JAX, "--set",
                                "output.name=killed", fault="kill:checkpoint.npz:2"))
    assert code == -9, err
    code, out, err = finish(runs_in_one_process(
        work, ["train", "--resume", "runs/killed"],
        ["train", "drop.yaml", "-q", *MIRRORED_ON_JAX, "--set", "output.name=straight"],
        ["train", "run.yaml", "-q", *MIRRORED_ON_JAX, "--set", "output.name=two"],
        ["train", "run.yaml", "-q", *ON_JAX, "--set", "output.name=one"]))
    assert code == 0, err
    assert out.splitlines()[0] == "runs/killed"

    assert_same_metrics(recorded(work / "runs" / "one"), recorded(work / "runs" / "two"))
    manifest = json.loads((work / "runs" / "two" / "manifest.json").read_text())
    assert manifest["distribution"] == {"strategy": "mirrored", "replicas": 2}
    assert manifest["backend"] == "jax"

    import keras
    import numpy as np

    a, b = work / "runs" / "straight", work / "runs" / "killed"
    for x, y in zip(keras.models.load_model(a / "model.keras").get_weights(),
                    keras.models.load_model(b / "model.keras").get_weights(), strict=True):
        assert np.array_equal(x, y), "weights differ"
    for name in ("history.csv", "metrics.json"):
        assert (a / name).read_text() == (b / name).read_text(), name
    assert json.loads((b / "manifest.json").read_text())["distribution"]["replicas"] == 2


def test_unreachable_worker_fails_quickly_with_its_address(cli, tiny, monkeypatch):
    """Before Keras and TensorFlow are imported (which takes a minute or more on a loaded
    2-core machine): without the check it waits for ever."""
    from nntrain.training import prepare

    monkeypatch.delenv("KERAS_BACKEND")  # multi_worker then means TensorFlow, never imported
    monkeypatch.setattr(prepare, "import_keras",
                        lambda: pytest.fail("Keras was imported before the peers were checked"))
    mine, nobody = free_ports(2)
    r = cli("train", tiny, "--strategy", "multi_worker",
            "--workers", f"127.0.0.1:{mine},127.0.0.1:{nobody}", "--worker-index", "0",
            "--set", "distribution.timeout=1")
    assert r.code == 1
    assert f"worker 1 (127.0.0.1:{nobody}) did not answer within 1s" in r.err
    assert r.out == ""
    assert not (tiny.parent / "runs").exists() or not any((tiny.parent / "runs").iterdir())


def test_worker_index_out_of_range_is_a_config_error(cli, tiny):
    r = cli("train", tiny, "--strategy", "multi_worker", "--workers",
            "127.0.0.1:2222,127.0.0.1:2223", "--worker-index", "2")
    assert r.code == 2
    assert "distribution.worker_index: expected an index into the 2 workers (0 to 1), got 2" \
        in r.err
    assert r.out == ""


@pytest.mark.parametrize("sets, where, message", [
    (["distribution.workers=[a:1]", "distribution.worker_index=0"],
     "distribution.workers", "workers needs strategy: multi_worker"),
    (["distribution.strategy=multi_worker", "distribution.workers=[nohost]",
      "distribution.worker_index=0"], "distribution.workers", "expected host:port"),
    (["distribution.strategy=multi_worker", "distribution.workers=['a:1', 'a:1']",
      "distribution.worker_index=0"], "distribution.workers", "each worker must appear once"),
    (["distribution.devices=[/cpu:0]"], "distribution.devices",
     "devices needs strategy: mirrored"),
    (["distribution.strategy=spread"], "distribution.strategy", "mirrored"),
    (["distribution.timeout=0"], "distribution.timeout", "expected a positive number"),
    (["distribution.heartbeat_timeout=-1"], "distribution.heartbeat_timeout",
     "expected a positive number"),
])
def test_bad_distribution_sections_name_their_key(cli, tiny, sets, where, message):
    args = [a for s in sets for a in ("--set", s)]
    r = cli("validate", tiny, *args)
    assert r.code == 2
    assert where in r.err and message in r.err, r.err


def test_multi_worker_without_a_cluster_says_what_is_missing(cli, tiny, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    r = cli("train", tiny, "--strategy", "multi_worker")
    assert r.code == 2
    assert "needs the workers" in r.err and "TF_CONFIG" in r.err


LOST_AT = "kill:step:13"  # tests/faults.py: worker 1, at the fourth of epoch 2's 9 steps


def cluster(work: Path, *each: list[str], fault: str | None = None,
            script: str | None = None, elsewhere: Path | None = None,
            workers: list[str] | None = None) -> list[subprocess.Popen]:
    """One worker for each argument list, on fresh ports, running `nntrain train ARGS` in
    ``work`` (the others than the chief in ``elsewhere`` if given); worker 1 through
    tests/faults.py with ``fault``, or every worker through ``script``; ``workers``: each
    worker's workers list, when they should not agree."""
    ports = ",".join(f"127.0.0.1:{p}" for p in free_ports(len(each)))
    env = {**TF, "TF_CPP_MIN_LOG_LEVEL": None}  # unset, as a user's would be: nntrain chooses
    procs = []
    for i, args in enumerate(each):
        args = ["train", *args, "--strategy", "multi_worker", "--workers",
                workers[i] if workers else ports, "--set", "distribution.timeout=60",
                "--worker-index", str(i)]
        cwd = elsewhere if i and elsewhere else work
        if script is None:
            procs.append(start(cwd, *args, fault=fault if i == 1 else None, extra_env=env))
        else:
            procs.append(subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=helper_env(**env)))
    return procs


def test_a_lost_worker_stops_the_run_and_every_worker_resumes_it_bit_for_bit(work, mirrored):
    """Also what two workers do when nothing goes wrong: train one model, write one run."""
    import keras
    import numpy as np

    (work / "long.yaml").write_text(LONG)
    chief, other = cluster(work, ["long.yaml"], ["long.yaml"], fault=LOST_AT)
    code, _, err = finish(other)
    assert code == -9, err
    # The heartbeats (distribution.heartbeat_timeout) notice; never a hang.
    code, out, err = finish(chief, timeout=120)
    assert code == 1
    run = work / "runs" / "long"
    # One line after epoch 1's: TensorFlow's C++ log of the aborted collectives is held back.
    lines = err.strip().splitlines()
    epoch_1 = [i for i, line in enumerate(lines) if line.split()[:2] == ["epoch", "1/2"]]
    assert epoch_1 and len(lines) == epoch_1[0] + 2, err
    line = lines[-1]
    assert "worker 1 (127.0.0.1:" in line and "stopped during training" in line, err
    assert f"--resume {Path('runs') / 'long'}" in line, err
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    before = (run / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in before[1:]] == ["1"]  # the header and epoch 1

    # The lost worker's scratch directory (the others write into one that they delete at the
    # end; a SIGKILL leaves it).
    left = list(Path(tempfile.gettempdir()).glob(f"nntrain-worker-{other.pid}-*"))
    assert len(left) == 1 and (left[0] / ".long.partial").is_dir()

    # Every worker again, on new ports: the chief continues its run and worker 1, given the
    # config, follows it from a directory of its own (it needs no run directory).
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    (c0, out0, err0), (c1, out1, err1) = [finish(p) for p in cluster(
        work, ["--resume", "runs/long"], [str(work / "long.yaml"), "--resume", "runs/long"],
        elsewhere=elsewhere)]
    assert c1 == 0, err1
    assert c0 == 0, err0
    assert out0.strip() == str(Path("runs") / "long") and out1 == ""
    assert list(elsewhere.iterdir()) == []
    # The scratch directory the SIGKILL left went when the next worker started.
    assert not left[0].exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumes"]) == 1
    after = (run / "history.csv").read_text().splitlines()
    assert after[:len(before)] == before and [r.split(",")[0] for r in after[1:]] == \
        ["1", "2"]
    # ... to the same weights and history, bit for bit, as a run never interrupted (mirrored
    # over two devices: the same two replicas' sums). The workers train one model and write
    # one run, which only the chief reports.
    assert [p.name for p in (work / "runs").iterdir()] == ["long"]
    straight = mirrored[0] / "runs" / "straight"
    resumed, model = [keras.models.load_model(path / "model.keras") for path in (run, straight)]
    for a, b in zip(resumed.get_weights(), model.get_weights(), strict=True):
        assert (a == b).all()
    assert (run / "history.csv").read_text() == (straight / "history.csv").read_text()
    x = np.random.RandomState(0).randn(16, 2).astype("float32")
    loss, accuracy = resumed.evaluate(x, (x[:, 0] > 0).astype("float32"), verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1


# `nntrain ARGS`, and then whether TensorFlow was imported, on stderr.
SAYS_IF_TENSORFLOW = """
import sys
from nntrain.cli.app import main
code = main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_a_worker_with_a_different_config_is_refused_before_tensorflow_starts(work):
    chief, other = cluster(work, ["run.yaml", "--set", "training.epochs=3"], ["run.yaml"],
                           script=SAYS_IF_TENSORFLOW)
    (c0, out0, err0), (c1, out1, err1) = finish(chief), finish(other)
    assert c1 == 2 and out1 == ""
    assert "this worker's config differs from the chief's: training.epochs: 3 -> 2" in err1
    assert c0 == 1 and out0 == ""
    assert "worker 1 (127.0.0.1:" in err0 and "training.epochs: 3 -> 2" in err0
    # Within a second, not after TensorFlow's import (a minute on a loaded machine).
    for err in err0, err1:
        assert err.splitlines()[-1] == "tensorflow imported: False"
        assert len(err.splitlines()) == 2, err
    assert not (work / "runs").exists()


def test_workers_started_with_different_workers_lists_are_told_so(work):
    chief_port, mine, theirs = free_ports(3)
    chief, other = cluster(work, ["run.yaml"], ["run.yaml"], workers=[
        f"127.0.0.1:{chief_port},127.0.0.1:{mine}", f"127.0.0.1:{chief_port},127.0.0.1:{theirs}"])
    (c0, _, err0), (c1, _, err1) = finish(chief), finish(other)
    difference = (f"distribution.workers: ['127.0.0.1:{chief_port}', '127.0.0.1:{mine}'] -> "
                  f"['127.0.0.1:{chief_port}', '127.0.0.1:{theirs}']")
    assert c1 == 2 and f"this worker's config differs from the chief's: {difference}" in err1
    assert c0 == 1 and f"worker 1 (127.0.0.1:{mine}) has a config that differs" in err0
    assert difference in err0


def test_one_differing_worker_stops_every_worker_of_three(work):
    """The workers whose config agrees do not go on to wait for the one that left."""
    workers = cluster(work, ["run.yaml"], ["run.yaml"],
                      ["run.yaml", "--set", "training.batch_size=16"], script=SAYS_IF_TENSORFLOW)
    (c0, _, err0), (c1, _, err1), (c2, _, err2) = [finish(w) for w in workers]
    assert c2 == 2 and "config differs from the chief's: training.batch_size: 32 -> 16" in err2
    assert c0 == 1 and "worker 2 (127.0.0.1:" in err0
    assert c1 == 1 and "the chief stopped the run: worker 2 (127.0.0.1:" in err1
    for err in err0, err1, err2:
        assert err.splitlines()[-1] == "tensorflow imported: False"
    assert not (work / "runs").exists()


def test_the_jax_patch_refuses_a_keras_it_does_not_fit(monkeypatch):
    from keras.src.backend.jax import distribution_lib

    from nntrain.errors import NntrainError
    from nntrain.training import distribute

    monkeypatch.setattr(distribute, "_uneven_patched", False)
    monkeypatch.setattr(distribution_lib, "distribute_data_input", lambda batch, layout: batch)
    with pytest.raises(NntrainError, match=r"mirrored training on JAX works around a Keras "
                       r"bug by replacing .*distribute_data_input.*tested with 3\.15"):
        distribute._patch_keras_uneven_batches()


def test_the_multi_worker_workarounds_refuse_versions_they_do_not_fit(monkeypatch):
    """The Keras patch and the coordination service's heartbeat setting (one test: both
    import TensorFlow)."""
    from keras.src.backend.tensorflow import trainer
    from tensorflow.python.eager import context

    from nntrain.errors import NntrainError
    from nntrain.training import distribute

    monkeypatch.setattr(distribute, "_patched", False)
    monkeypatch.setattr(trainer, "reduce_per_replica", lambda values, axis: values)
    with pytest.raises(NntrainError, match=r"multi-worker training works around a Keras bug "
                       r"by replacing .*reduce_per_replica.*tested with 3\.15"):
        distribute._patch_keras_multi_worker()

    monkeypatch.setattr(context.Context, "configure_coordination_service",
                        lambda self, service_type, service_leader="": None)
    with pytest.raises(NntrainError, match=r"multi-worker training sets distribution\."
                       r"heartbeat_timeout through .*configure_coordination_service.*tested "
                       r"with 2\.21"):
        distribute._set_heartbeat_timeout(distribute.Cluster(["a:1", "b:2"], 0), 5)
