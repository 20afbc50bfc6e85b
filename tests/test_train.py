"""Training end to end: the tutorial reproduced, determinism, and what a run directory holds."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import NO_PLOTS, ROOT, TINY


def train(cli, config, *extra):
    res = cli("train", config, *extra)
    assert res.code == 0, res.err
    return Path(res.out.strip()), res


# Plain Keras in one separate process, where nothing of nntrain's state can leak in and nntrain
# is never imported: the tutorial's reference, shuffled and not (each run seeds Keras, NumPy and
# Python afresh, as a process of its own would), then a model nntrain saved, loaded and asked
# for predictions. One start instead of two: each costs seconds of imports.
PLAIN_KERAS = """
import json, sys
import reference_tutorial as r
refs = {s: r.run(42, shuffle=s == 'shuffled') for s in ('shuffled', 'in order')}
import numpy as np, keras
m = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))
print(json.dumps({'references': refs,
                  'nntrain': any(k.startswith('nntrain') for k in sys.modules)}))
"""


@pytest.fixture(scope="module")
def plain_keras(tmp_path_factory):
    """The other process's results: references (the tutorial's, by 'shuffled' and 'in order'),
    and, for the model of TINY's run (run_dir), the inputs x, its predictions y and whether it
    imported nntrain."""
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("plain-keras")
    (root / "tiny.yaml").write_text(TINY)
    assert main(["train", str(root / "tiny.yaml"), "-q", *NO_PLOTS,
                 "--set", f"output.dir={root / 'runs'}"]) == 0, "training tiny failed"
    run_dir = root / "runs" / "tiny"
    x = np.random.RandomState(0).rand(5, 2).astype(np.float32)
    np.save(root / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(run_dir / "model.keras"),
                          str(root / "x.npy"), str(root / "y.npy")], cwd=ROOT / "tests",
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return {**doc, "run_dir": run_dir, "x": x, "y": np.load(root / "y.npy")}


@pytest.mark.parametrize("shuffle", [True, False])
def test_tutorial_matches_the_hand_written_keras_program(cli, plain_keras, shuffle):
    ref = plain_keras["references"]["shuffled" if shuffle else "in order"]
    run_dir, _ = train(cli, ROOT / "configs" / "tutorial.yaml",
                       "--set", f"training.shuffle={str(shuffle).lower()}", *NO_PLOTS)
    # The weights, not 20 rows' accuracy (which a different model can match by chance):
    # bit for bit, float32 -> float64 -> JSON -> float64 being exact.
    import keras

    weights = keras.models.load_model(run_dir / "model.keras").get_weights()
    assert len(weights) == len(ref["weights"]) == 6
    for mine, theirs in zip(weights, ref["weights"]):
        assert np.array_equal(mine, np.asarray(theirs, dtype=np.float32))
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-6)
    assert test["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["rows"] == {"train": 80, "validation": 0, "test": 20}


def test_same_config_and_seed_give_identical_metrics(cli, tiny):
    first, _ = train(cli, tiny, "--set", "output.name=a", *NO_PLOTS)
    second, _ = train(cli, tiny, "--set", "output.name=b", *NO_PLOTS)
    assert (first / "metrics.json").read_text() == (second / "metrics.json").read_text()
    other, _ = train(cli, tiny, "--set", "output.name=c", "--set", "training.seed=7", *NO_PLOTS)
    assert (other / "metrics.json").read_text() != (first / "metrics.json").read_text()


def test_run_directory_contents(cli, tiny, tmp_path):
    run_dir, res = train(cli, tiny)
    assert run_dir == Path("runs") / "tiny"
    assert sorted(p.name for p in (tmp_path / run_dir).iterdir()) == [
        "baseline.json", "checkpoint.npz", "config.yaml", "curves.png", "decision_boundary.png",
        "history.csv", "manifest.json", "metrics.json", "model.keras", "per_class.csv"]
    assert not list((tmp_path / "runs").glob(".*")), "no staging leftovers"
    with open(run_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    assert 0 <= metrics["test"]["accuracy"] <= 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["seed"] == 42
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    engine = {"tensorflow": {"tensorflow"}, "jax": {"jax", "jaxlib"}}[manifest["backend"]]
    assert set(manifest["versions"]) == {"nntrain", *engine, "keras", "numpy", "python"}
    assert manifest["command"][:2] == ["nntrain", "train"]
    # The resolved config has every default and trains again as is.
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["training"]["batch_size"] == 32
    assert resolved["training"]["optimizer"] == {"name": "adam", "learning_rate": 0.01}
    again, _ = train(cli, run_dir / "config.yaml", "--set", "output.name=again")
    assert (again / "metrics.json").read_text() == (run_dir / "metrics.json").read_text()
    assert "final metrics" in res.err and "run directory: runs/tiny" in res.err


def test_saved_model_loads_without_nntrain_and_predicts_the_same(plain_keras):
    import keras

    expected = keras.models.load_model(plain_keras["run_dir"] / "model.keras").predict(
        plain_keras["x"], verbose=0)
    assert not plain_keras["nntrain"], "nntrain was imported"
    np.testing.assert_allclose(plain_keras["y"], expected, rtol=1e-6)


def test_existing_run_is_not_overwritten_without_force(cli, tiny, tmp_path):
    run_dir, _ = train(cli, tiny, *NO_PLOTS)
    before = (tmp_path / run_dir / "metrics.json").read_bytes()
    res = cli("train", tiny, "--set", "training.seed=3", *NO_PLOTS)
    assert res.code == 2
    assert "a run with this name exists already" in res.err and "--force" in res.err
    assert (tmp_path / run_dir / "metrics.json").read_bytes() == before
    res = cli("train", tiny, "--set", "training.seed=3", "--force", *NO_PLOTS)
    assert res.code == 0
    assert (tmp_path / run_dir / "metrics.json").read_bytes() != before


def test_default_run_names_are_unique(cli, write):
    cfg = write("exp.yaml", TINY.replace("output:\n  name: tiny\n", ""))
    a, _ = train(cli, cfg, *NO_PLOTS)
    b, _ = train(cli, cfg, *NO_PLOTS)
    assert a != b and a.name.startswith("exp-") and b.name.startswith("exp-")


def test_csv_data_with_text_labels(cli, write):
    rows = ["a,b,kind"] + [f"{i % 7},{(i * 3) % 5},{'cat' if i % 2 else 'dog'}" for i in range(60)]
    write("data/pets.csv", "\n".join(rows) + "\n")
    cfg = write("pets.yaml", """
        data: {source: csv, path: data/pets.csv, target: kind}
        model:
          layers: [{type: dense, units: 2, activation: softmax}]
        training: {loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 1}
        output: {name: pets}
    """)
    run_dir, _ = train(cli, cfg, *NO_PLOTS)
    assert json.loads((run_dir / "labels.json").read_text()) == ["cat", "dog"]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert Path(resolved["data"]["path"]).is_absolute()


def test_leaky_relu_follows_the_tutorial_slope(cli, write):
    import keras

    cfg = write("leaky.yaml", """
        data: {source: generate, generator: xor, samples: 64}
        model:
          layers:
            - {type: dense, units: 4, activation: leaky_relu}
            - {type: dense, units: 4, activation: {name: leaky_relu, negative_slope: 0.2}}
            - {type: dense, units: 1, activation: sigmoid}
        training: {loss: binary_crossentropy, epochs: 1}
        output: {name: leaky}
    """)
    run_dir, _ = train(cli, cfg, *NO_PLOTS)
    model = keras.models.load_model(run_dir / "model.keras")
    slopes = [layer.negative_slope for layer in model.layers
              if isinstance(layer, keras.layers.LeakyReLU)]
    assert slopes == pytest.approx([0.01, 0.2])
