"""`nntrain explain`: attributions checked against known ground truth, not just "it ran"."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT
from tiny_runs import ANIMALS, shared_runs, write_animals

NNTRAIN = [sys.executable, "-m", "nntrain"]
FEATURES = [f"x{i}" for i in range(10)]

# y = 3·x0 − 2·x1 + small noise; x2..x9 play no part.
LINEAR = """
data: {source: csv, path: linear.csv, target: y, normalize: standard, split: {test: 0.25}}
model:
  layers:
    - {type: dense, units: 1}
training:
  loss: mse
  optimizer: {name: adam, learning_rate: 0.1}
  metrics: [mae]
  epochs: 15
  batch_size: 32
"""

# The same data through a ReLU network: the ranking must not depend on the model being linear.
NONLINEAR = LINEAR.replace("- {type: dense, units: 1}",
                           "- {type: dense, units: 16, activation: relu}\n"
                           "    - {type: dense, units: 1}").replace("learning_rate: 0.1",
                                                                   "learning_rate: 0.03")


def write_linear(path, rows, seed=0, target=True):
    rs = np.random.RandomState(seed)
    x = rs.randn(rows, 10)
    y = 3 * x[:, 0] - 2 * x[:, 1] + 0.05 * rs.randn(rows)
    head = FEATURES + (["y"] if target else [])
    cells = np.column_stack([x, y]) if target else x
    path.write_text(",".join(head) + "\n" + "".join(",".join(map(repr, r)) + "\n"
                                                     for r in cells.tolist()))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """Two runs on the y = 3·x0 − 2·x1 data: a linear model and a ReLU network."""
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("explain")
    write_linear(root / "linear.csv", 400)
    out = {}
    for name, config in (("linear", LINEAR), ("relu", NONLINEAR)):
        (root / f"{name}.yaml").write_text(textwrap.dedent(config).lstrip())
        # No pictures (no test looks at one); 20 rows a batch: the 300 training and 100 test
        # rows are whole batches, so each step compiles for one batch shape only.
        code = main(["train", str(root / f"{name}.yaml"), "-q", "--set",
                     f"output.dir={root / 'runs'}", "--set", f"output.name={name}",
                     "--set", "output.plots=false", "--set", "training.batch_size=20"])
        assert code == 0
        out[name] = root / "runs" / name
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "binary", "animals")


def table(text):
    return list(csv.DictReader(io.StringIO(text)))


def attributions(rows, names=FEATURES):
    return np.array([[float(r[n]) for n in names] for r in rows])


def mean_abs(rows, names=FEATURES):
    return dict(zip(names, np.abs(attributions(rows, names)).mean(axis=0)))


def test_linear_model_attributions_are_w_times_x_minus_baseline(cli, regression, tmp_path):
    import keras

    run = regression["linear"]
    x = write_linear(tmp_path / "new.csv", 50, seed=7, target=False)
    res = cli("explain", run, "--data", tmp_path / "new.csv")
    assert res.code == 0, res.err
    rows = table(res.out)
    assert list(rows[0]) == ["row", *FEATURES, "prediction", "baseline_prediction"]
    assert [int(r["row"]) for r in rows] == list(range(50))
    # The baseline is the training rows' mean, as training recreated them.
    from nntrain.use.load import load_trained, run_rows

    base = np.array(json.loads((run / "baseline.json").read_text())["mean"])
    np.testing.assert_allclose(base, run_rows(load_trained(run)).x_train.mean(axis=0),
                               atol=1e-5)
    # w from the model itself, without gradients: f(b + e_i) - f(b); normalization included.
    model = keras.models.load_model(run / "model.keras")
    probes = np.vstack([base, base + np.eye(10)]).astype(np.float32)
    f = model.predict(probes, verbose=0)[:, 0].astype(np.float64)
    w = f[1:] - f[0]
    np.testing.assert_allclose(attributions(rows), w * (x - base), atol=2e-4, rtol=1e-4)
    predicted = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], predicted, atol=1e-4)
    np.testing.assert_allclose([float(r["baseline_prediction"]) for r in rows], f[0], atol=1e-4)
    assert "within 1% of the output's range" in res.err


@pytest.mark.parametrize("method", ["gradients", "permutation"])
def test_both_methods_rank_x0_then_x1_and_the_rest_near_zero(cli, regression, method):
    res = cli("explain", regression["relu"], "--method", method)
    assert res.code == 0, res.err
    if method == "gradients":
        importance = mean_abs(table(res.out))
    else:
        importance = {r["feature"]: float(r["importance"]) for r in table(res.out)}
        assert list(importance) == sorted(importance, key=lambda f: -importance[f])
    ranked = sorted(importance, key=lambda f: -importance[f])
    assert ranked[:2] == ["x0", "x1"], importance
    assert max(importance[f] for f in FEATURES[2:]) < 0.1 * importance["x1"], importance
    # The table on stderr lists the columns in the same order.
    listed = [line.split()[1] for line in res.err.splitlines() if line.startswith("│")]
    assert listed[:2] == ["x0", "x1"]


def test_completeness_holds_on_every_row_of_a_nonlinear_classifier(cli, runs):
    res = cli("explain", runs["binary"])
    assert res.code == 0, res.err
    rows = table(res.out)
    assert len(rows) == 40  # the run's 20% test rows of 200
    total = attributions(rows, ["x0", "x1"]).sum(axis=1)
    change = np.array([float(r["prediction"]) - float(r["baseline_prediction"]) for r in rows])
    # Probabilities range over [0, 1]: 1% of that.
    assert np.abs(total - change).max() <= 0.01
    # The predicted class is explained: its probability is at least one half.
    assert all(float(r["prediction"]) >= 0.5 for r in rows)
    assert "largest gap" in res.err and "warning" not in res.err


def test_multiclass_text_labels_jsonl_and_class(cli, runs, tmp_path):
    data = write_animals(tmp_path / "in.csv", 20, seed=3)
    res = cli("explain", runs["animals"], "--data", data, "--class", "emu", "--format", "jsonl")
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in res.out.splitlines()]
    assert len(rows) == 20 and {r["class"] for r in rows} == {"emu"}
    predicted = table(cli("predict", runs["animals"], "--data", data).out)
    np.testing.assert_allclose([r["prediction"] for r in rows],
                               [float(p["p_emu"]) for p in predicted], atol=1e-5)
    for r in rows:
        assert abs(r["a"] + r["b"] - (r["prediction"] - r["baseline_prediction"])) <= 0.01
    res = cli("explain", runs["animals"], "--data", data, "--class", "emus")
    assert res.code == 2 and res.out == ""
    assert "no class 'emus' (did you mean 'emu'?)" in res.err
    assert ", ".join(ANIMALS) in res.err


def test_baseline_choices_and_runs_without_a_recorded_one(cli, runs, tmp_path):
    import keras

    model = keras.models.load_model(runs["binary"] / "model.keras")
    recorded = json.loads((runs["binary"] / "baseline.json").read_text())
    res = cli("explain", runs["binary"], "--baseline", "min", "-q")
    assert res.code == 0 and res.err == ""
    p_low = model.predict(np.array([recorded["min"]], np.float32), verbose=0)[0, 0]
    for r in table(res.out):  # the probability of the row's class, at the minimum
        expected = p_low if r["class"] == "1" else 1 - p_low
        assert abs(float(r["baseline_prediction"]) - expected) < 1e-5
    res = cli("explain", runs["binary"], "--baseline", "median")
    assert res.code == 2 and "--baseline: expected one of mean, min, zeros" in res.err
    # A bare .keras file has no training rows: only zeros, and only when asked for.
    bare = runs["binary"] / "model.keras"
    data = tmp_path / "in.csv"
    data.write_text("x0,x1\n0.5,0.25\n1.0,-0.5\n")
    res = cli("explain", bare, "--data", data)
    assert res.code == 2 and res.out == ""
    assert "a bare .keras file has no training rows" in res.err and "--baseline zeros" in res.err
    res = cli("explain", bare, "--data", data, "--baseline", "zeros")
    assert res.code == 0, res.err
    rows = table(res.out)
    p_zero = model.predict(np.zeros((1, 2), np.float32), verbose=0)[0, 0]
    for r in rows:
        expected = p_zero if r["class"] == "1" else 1 - p_zero
        assert abs(float(r["baseline_prediction"]) - expected) < 1e-5
    total = attributions(rows, ["x0", "x1"]).sum(axis=1)
    change = [float(r["prediction"]) - float(r["baseline_prediction"]) for r in rows]
    np.testing.assert_allclose(total, change, atol=0.01)
    # A run trained before baseline.json existed.
    old = tmp_path / "old"
    shutil.copytree(runs["binary"], old)
    (old / "baseline.json").unlink()
    res = cli("explain", old)
    assert res.code == 2 and res.out == "" and "the run has no baseline.json" in res.err
    assert cli("explain", old, "--baseline", "zeros", "-q").code == 0


def test_usage_errors_exit_2_with_nothing_on_stdout(cli, regression, runs, tmp_path):
    res = cli("explain", regression["linear"], "--class", "1")
    assert res.code == 2 and res.out == "" and "--class is for classifiers" in res.err
    res = cli("explain", runs["binary"], "--method", "shap")
    assert res.code == 2 and "--method: expected one of gradients, permutation" in res.err
    res = cli("explain", runs["binary"], "--plot", tmp_path / "importance.jpg")
    assert res.code == 2 and "PNG" in res.err
    res = cli("explain", runs["binary"], "--method", "permutation", "--baseline", "zeros")
    assert res.code == 2 and "--baseline and --class are for --method gradients" in res.err
    assert not (tmp_path / "importance.jpg").exists()


@pytest.mark.parametrize("method", ["gradients", "permutation"])
def test_plot_draws_the_importance(cli, runs, tmp_path, method):
    picture = tmp_path / f"{method}.png"
    res = cli("explain", runs["binary"], "--method", method, "--plot", picture, "-q")
    assert res.code == 0 and res.err == ""
    png = picture.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # Two inputs: the attribution of each over the plane stands beside the bars.
    width = int.from_bytes(png[16:20], "big")
    assert width > 1000 if method == "gradients" else width < 800


def test_pipe_into_head_ends_quietly(runs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = (" ".join(NNTRAIN) + " generate-data moons -n 20000 | " + " ".join(NNTRAIN)
               + f" explain {runs['binary']} --data - | head -3")
    res = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
    lines = res.stdout.splitlines()
    assert lines[0] == "row,x0,x1,class,prediction,baseline_prediction" and len(lines) == 3
    assert "Traceback" not in res.stderr and "Error" not in res.stderr, res.stderr


def test_a_streamed_run_records_its_training_rows_baseline(cli, tmp_path, write):
    from nntrain.use.load import load_trained, run_rows, split_batches

    write_linear(tmp_path / "linear.csv", 300)
    config = write("streamed.yaml", LINEAR.replace("normalize: standard",
                                                   "normalize: standard, stream: true")
                   .replace("epochs: 15", "epochs: 1"))
    assert cli("train", config, "-q", "--set", "output.name=streamed",
               "--set", "output.plots=false").code == 0
    run = tmp_path / "runs" / "streamed"
    recorded = json.loads((run / "baseline.json").read_text())
    ds = run_rows(load_trained(run))
    x = np.concatenate([bx for bx, _ in split_batches(ds, "train")])
    np.testing.assert_allclose(recorded["mean"], x.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(recorded["min"], x.min(axis=0), atol=1e-6)
    res = cli("explain", run, "-q")
    assert res.code == 0 and len(table(res.out)) == len(ds.x_test)


def test_a_file_without_rows_writes_nothing(cli, runs, tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("x0,x1\n")
    res = cli("explain", runs["binary"], "--data", data)
    assert res.code == 2 and res.out == "" and "no rows to explain" in res.err


def test_permutation_on_a_multiclass_run_with_text_labels(cli, runs, tmp_path):
    data = write_animals(tmp_path / "in.csv", 200, seed=5)
    res = cli("explain", runs["animals"], "--data", data, "--method", "permutation",
              "--repeats", "3", "--format", "jsonl")
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in res.out.splitlines()]
    assert {r["feature"] for r in rows} == {"a", "b"}
    # Both columns separate the clusters: shuffling either loses accuracy. How much each loses
    # depends on what three epochs learned from the backend's initial weights (on JAX the model
    # leans on b: 0.45 against 0.02), so only the leading column's drop is sized.
    assert all(r["importance"] > 0 for r in rows), rows
    assert max(r["importance"] for r in rows) > 0.05, rows
    assert "drop in accuracy" in res.err and "3 shuffles" in res.err


def test_the_other_backend_gives_the_same_attributions(runs, tmp_path, cli):
    """#19 runs models on JAX or TensorFlow: the gradients come from jax.grad or a
    GradientTape. This process explains on the suite's backend, one other process on the
    other backend."""
    import keras

    here = keras.backend.backend()
    other = "tensorflow" if here == "jax" else "jax"
    pytest.importorskip(other)
    data = tmp_path / "in.csv"
    data.write_text("x0,x1\n0.5,0.25\n1.0,-0.5\n-0.8,0.9\n")
    res = cli("explain", runs["binary"], "--data", data, "-q")
    assert res.code == 0, res.err
    outputs = {here: attributions(table(res.out), ["x0", "x1", "prediction"])}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": other}
    done = subprocess.run([*NNTRAIN, "explain", str(runs["binary"]), "--data", str(data), "-q"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    outputs[other] = attributions(table(done.stdout), ["x0", "x1", "prediction"])
    np.testing.assert_allclose(outputs["jax"], outputs["tensorflow"], atol=1e-5)


def test_a_bare_keras_file_without_a_recorded_loss_needs_loss(cli, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.set_weights([np.array([[2.0], [-1.0]], np.float32), np.array([0.5], np.float32)])
    model.save(tmp_path / "plain.keras")  # never compiled: no loss in the file
    data = tmp_path / "in.csv"
    data.write_text("x0,x1\n1.0,2.0\n3.0,-1.0\n")
    res = cli("explain", tmp_path / "plain.keras", "--data", data, "--baseline", "zeros")
    assert res.code == 2 and res.out == "" and "--loss" in res.err
    res = cli("explain", tmp_path / "plain.keras", "--data", data, "--baseline", "zeros",
              "--loss", "mse")
    assert res.code == 0, res.err
    rows = table(res.out)
    # A linear model from zeros: exactly w·x.
    np.testing.assert_allclose(attributions(rows, ["x0", "x1"]), [[2.0, -2.0], [6.0, 1.0]],
                               atol=1e-5)
