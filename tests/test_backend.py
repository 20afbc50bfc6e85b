"""The Keras backend: chosen per run (training.backend, --backend, KERAS_BACKEND), recorded in
the run, and invisible in the trained model, which loads in plain Keras on either backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT

# Dropout: its seed-generator state is part of what a resume must restore.
DROPOUT = """
data: {source: generate, generator: moons, samples: 300, split: {validation: 0.1, test: 0.2}}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: 3
  batch_size: 16
  backend: jax
output: {plots: false}
"""

# Trains on JAX in one process: straight through, and 1 epoch then --resume to 3 (the resume
# after a mid-epoch stop runs on JAX in CI: tests/test_resume.py with KERAS_BACKEND=jax). Prints
# whether TensorFlow was imported, and the straight run's predictions on fixed rows.
ON_JAX = """
import json, sys
import numpy as np
from nntrain.cli.app import main
assert main(["train", "run.yaml", "--set", "output.name=straight"]) == 0
tf_loaded = "tensorflow" in sys.modules
import keras
# Each as in a fresh process: Keras numbers the names of layers (and so of the variables a
# checkpoint holds) per session.
keras.backend.clear_session()
assert main(["train", "run.yaml", "--set", "output.name=part", "--set", "training.epochs=1"]) == 0
keras.backend.clear_session()
assert main(["train", "--resume", "runs/part", "--set", "training.epochs=3"]) == 0
x = np.linspace(-1.5, 2.5, 40, dtype=np.float32).reshape(20, 2)
pred = keras.models.load_model("runs/straight/model.keras").predict(x, verbose=0)
print(json.dumps({"backend": keras.backend.backend(), "tensorflow_imported": tf_loaded,
                  "predictions": pred.ravel().tolist()}))
"""

ON_TENSORFLOW = """
import json
import keras
import numpy as np
x = np.linspace(-1.5, 2.5, 40, dtype=np.float32).reshape(20, 2)
pred = keras.models.load_model("runs/straight/model.keras").predict(x, verbose=0)
print(json.dumps({"backend": keras.backend.backend(), "predictions": pred.ravel().tolist()}))
"""


def python(cwd, code: str, backend: str | None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               **({"KERAS_BACKEND": backend} if backend else {}), **extra)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Each of its processes names its backend, whatever the suite's: .ci/run's TensorFlow pass
# would only run it again.
@pytest.mark.skipif(os.environ["KERAS_BACKEND"] == "tensorflow",
                    reason="the same test on either backend; the JAX pass runs it")
def test_a_jax_run_resumes_bit_for_bit_and_its_model_loads_on_tensorflow(tmp_path):
    (tmp_path / "run.yaml").write_text(DROPOUT)
    # At XLA's default optimization, as users train (conftest lowers it for the rest of the
    # suite).
    jax = python(tmp_path, ON_JAX, backend=None, XLA_FLAGS="")  # training.backend: jax decides
    assert jax["backend"] == "jax"
    assert jax["tensorflow_imported"] is False  # in-memory rows: no TensorFlow start-up
    straight, part = tmp_path / "runs" / "straight", tmp_path / "runs" / "part"
    manifest = json.loads((straight / "manifest.json").read_text())
    assert manifest["backend"] == "jax"
    assert "jax" in manifest["versions"] and "tensorflow" not in manifest["versions"]
    assert "backend: jax" in (straight / "config.yaml").read_text()
    # Resumed after epoch 1: the same weights, history and metrics, to the bit.
    assert (part / "history.csv").read_text() == (straight / "history.csv").read_text()
    assert (part / "metrics.json").read_text() == (straight / "metrics.json").read_text()
    assert json.loads((part / "manifest.json").read_text())["resumes"]
    # The .keras file is backend-neutral: plain Keras on TensorFlow predicts the same.
    tf = python(tmp_path, ON_TENSORFLOW, backend="tensorflow")
    assert tf["backend"] == "tensorflow"
    np.testing.assert_allclose(tf["predictions"], jax["predictions"], rtol=1e-5, atol=1e-6)


def test_a_process_on_one_backend_refuses_to_train_on_the_other(cli, tiny, tmp_path):
    from nntrain.backend import imported
    from nntrain.tf import import_keras

    import_keras()
    current = imported()
    other = "jax" if current == "tensorflow" else "tensorflow"
    r = cli("train", tiny, "--backend", other)
    assert r.code == 2
    assert f"imported Keras on the {current} backend already" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_multi_worker_on_jax_is_refused_in_one_line(cli, tiny, tmp_path):
    r = cli("train", tiny, "--backend", "jax", "--strategy", "multi_worker", "--workers",
            "127.0.0.1:2222,127.0.0.1:2223", "--worker-index", "0")
    assert r.code == 2
    assert "tf.distribute, which needs backend tensorflow" in r.err
    assert "training.backend is jax" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_an_unknown_backend_names_the_choices(cli, tiny, tmp_path):
    r = cli("train", tiny, "--backend", "theano")
    assert r.code == 2
    assert "training.backend" in r.err and "'jax'" in r.err and "'tensorflow'" in r.err
    assert not (tmp_path / "runs").exists()


def test_keras_backend_must_name_a_backend_nntrain_trains_on(cli, tiny, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    r = cli("train", tiny)
    assert r.code == 2
    assert "KERAS_BACKEND=theano is not a backend nntrain trains on" in r.err
    assert "tensorflow, jax" in r.err


def test_the_manifest_records_the_backend_the_run_used(cli, tiny, tmp_path):
    from nntrain.backend import imported

    r = cli("train", tiny, "--set", "output.plots=false")
    assert r.code == 0, r.err
    manifest = json.loads((tmp_path / "runs" / "tiny" / "manifest.json").read_text())
    assert manifest["backend"] == imported()
    assert f"backend: {imported()}" in (tmp_path / "runs" / "tiny" / "config.yaml").read_text()


def test_a_resumed_run_continues_on_the_backend_it_trained_on(cli, tiny, tmp_path,
                                                             monkeypatch):
    from nntrain.backend import imported

    assert cli("train", tiny, "--set", "output.plots=false").code == 0
    run = tmp_path / "runs" / "tiny"
    current = imported()
    other = "jax" if current == "tensorflow" else "tensorflow"
    # KERAS_BACKEND names the other backend: the run still continues on its own.
    monkeypatch.setenv("KERAS_BACKEND", other)
    r = cli("train", "--resume", run, "--set", "training.epochs=3")
    assert r.code == 0, r.err
    assert json.loads((run / "manifest.json").read_text())["backend"] == current
    # A run from before nntrain recorded the backend trained on TensorFlow, the only one then.
    monkeypatch.delenv("KERAS_BACKEND")
    config = run / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.strip().startswith("backend:")))
    r = cli("train", "--resume", run, "--set", "training.epochs=4")
    if current == "tensorflow":
        assert r.code == 0, r.err
    else:  # this process has Keras on JAX already: the resume asks for TensorFlow
        assert r.code == 2
        assert "cannot switch to tensorflow" in r.err
