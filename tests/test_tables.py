"""Honest tables (#16): class weights, early stopping's report, per_class.csv, scaled
regression targets, k-fold cross-validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import NO_PLOTS, TINY


def _csv(path: Path, x: np.ndarray, y: np.ndarray, target: str = "y") -> Path:
    names = [f"x{i}" for i in range(x.shape[1])]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*names, target])
        for row, label in zip(x.tolist(), y.tolist()):
            out.writerow([*(f"{v:.6f}" for v in row), label])
    return path


def _per_class(run_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(run_dir / "per_class.csv") as fh:
        return {(r["split"], r["class"]): r for r in csv.DictReader(fh)}


IMBALANCED = """
data: {{source: csv, path: rare.csv, target: label, split: {{test: 0.3}}}}
model:
  layers:
    - {{type: dense, units: 8, activation: relu}}
    - {{type: dense, units: 1, activation: sigmoid}}
training:
  loss: binary_crossentropy
  optimizer: {{name: adam, learning_rate: 0.01}}
  epochs: 15
  {weight}
output: {{name: {name}, plots: false}}
"""


def test_balanced_class_weight_lifts_minority_recall(cli, write, tmp_path):
    # 1 positive in 20; the positives sit 1 standard deviations away from the negatives.
    rs = np.random.RandomState(0)
    y = (np.arange(1000) % 20 == 0).astype(int)
    x = rs.normal(size=(1000, 2)) + 1.0 * y[:, None]
    _csv(tmp_path / "rare.csv", x, np.where(y == 1, "rare", "common"), "label")
    plain = write("plain.yaml", IMBALANCED.format(weight="", name="plain"))
    weighted = write("w.yaml", IMBALANCED.format(weight="class_weight: balanced", name="w"))
    recalls = {}
    for config in (plain, weighted):
        res = cli("train", config)
        assert res.code == 0, res.err
        run_dir = Path(res.out.strip())
        recalls[config.stem] = float(_per_class(run_dir)[("test", "rare")]["recall"])
    assert recalls["plain"] <= 0.5  # most rare rows are called common
    assert recalls["w"] >= recalls["plain"] + 0.25  # 0.40 -> 0.73 on TensorFlow
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # n / (2 * count) of the 700 training rows (stratified: 35 rare, 665 common).
    assert manifest["class_weight"] == {"common": pytest.approx(700 / 1330, abs=1e-6),
                                        "rare": pytest.approx(10.0)}


def test_class_weight_by_label_and_unknown_label(cli, write, tmp_path):
    _csv(tmp_path / "rare.csv", np.random.RandomState(1).normal(size=(100, 2)),
         np.where(np.arange(100) % 5 == 0, "rare", "common"), "label")
    good = write("good.yaml", IMBALANCED.format(weight="class_weight: {rare: 4}",
                                                name="good"))
    # One epoch: the weights are recorded, not learned from.
    res = cli("train", good, "--set", "training.epochs=1")
    assert res.code == 0, res.err
    manifest = json.loads((Path(res.out.strip()) / "manifest.json").read_text())
    assert manifest["class_weight"] == {"rare": 4.0}
    bad = write("bad.yaml", IMBALANCED.format(weight="class_weight: {raer: 4}", name="bad"))
    res = cli("train", bad)
    assert res.code == 2 and res.out == ""
    assert "bad.yaml:10:18: training.class_weight.raer: no class 'raer' in the data; its " \
           "labels are common, rare" in res.err
    assert not (tmp_path / "runs" / "bad").exists()


def test_class_weight_misspelled_and_on_a_regression(cli, write, tmp_path):
    res = cli("train", write("c.yaml", TINY.replace("epochs: 2", "epochs: 2\n  class_weight: "
                                                    "balnced")))
    assert res.code == 2 and "training.class_weight: expected balanced or {label: weight}, " \
        "got 'balnced' (did you mean 'balanced'?)" in res.err
    res = cli("train", write("r.yaml", TINY.replace("binary_crossentropy", "mse").replace(
        "epochs: 2", "epochs: 2\n  class_weight: balanced")))
    assert res.code == 2 and "class weights need a classification loss" in res.err


def test_early_stopping_reports_stopped_and_restored_epochs(cli, write, tmp_path):
    # A learning rate this high makes val_loss stop improving within a few epochs.
    config = write("es.yaml", TINY.replace("epochs: 2", "epochs: 60\n  early_stopping: "
                                           "{monitor: val_loss, patience: 3}"))
    res = cli("train", config, "--jsonl", *NO_PLOTS)
    assert res.code == 0, res.err
    lines = [json.loads(line) for line in res.out.splitlines()]
    end = lines[-1]["early_stopping"]
    epochs = [line for line in lines if line["event"] == "epoch"]
    assert end["stopped_epoch"] == len(epochs) < 60
    val = [e["val_loss"] for e in epochs]
    assert end["restored_epoch"] == end["best_epoch"] == int(np.argmin(val)) + 1
    assert end["stopped_epoch"] - end["restored_epoch"] == 3
    assert f"early stopping: stopped at epoch {end['stopped_epoch']} (val_loss did not " \
           f"improve for 3 epochs); restored the weights of epoch {end['restored_epoch']}" \
        in res.err
    run_dir = Path(lines[-1]["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["early_stopping"] == end
    # The final validation loss is the restored epoch's, not the last one's.
    assert metrics["validation"]["loss"] == pytest.approx(min(val), rel=1e-5)


def test_per_class_csv_has_evals_numbers_and_a_note_for_unused_units(cli, write):
    config = write("m.yaml", TINY.replace("units: 1, activation: sigmoid",
                                          "units: 3, activation: softmax").replace(
        "binary_crossentropy", "sparse_categorical_crossentropy"))
    res = cli("train", config, *NO_PLOTS)
    assert res.code == 0, res.err
    assert "note: the output layer has 3 units but the labels have 2 classes: 1 unit no " \
           "label uses (model.layers[1].units: 2 fits the data)" in res.err
    run_dir = Path(res.out.strip())
    rows = _per_class(run_dir)
    assert {s for s, _ in rows} == {"train", "validation", "test"}
    ev = cli("eval", run_dir, "--json")
    assert ev.code == 0, ev.err
    for name, scores in json.loads(ev.out)["per_class"].items():
        row = rows[("test", name)]
        assert int(row["support"]) == scores["support"]
        for key in ("precision", "recall", "f1"):
            assert row[key] == ("" if scores[key] is None else repr(scores[key]))


HUNDREDS = """
data:
  source: csv
  path: hundreds.csv
  target: y
  normalize: standard
  target_normalize: {scale}
  split: {{validation: 0.2, test: 0.2}}
model:
  layers:
    - {{type: dense, units: 16, activation: relu}}
    - {{type: dense, units: 1}}
training:
  loss: mse
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [r2_score]
  epochs: 25
output: {{name: {scale}, plots: false}}
"""


def test_scaled_target_reaches_r2_sooner_and_the_model_speaks_the_users_units(cli, write,
                                                                               tmp_path):
    rs = np.random.RandomState(0)
    x = rs.normal(size=(300, 4))
    y = 300 + 60 * x @ np.array([1.0, -0.5, 0.8, 0.3]) + rs.normal(scale=10, size=300)
    _csv(tmp_path / "hundreds.csv", x, np.round(y, 3))
    first, runs = {}, {}
    for scale in ("none", "standard"):
        res = cli("train", write(f"{scale}.yaml", HUNDREDS.format(scale=scale)), "--jsonl")
        assert res.code == 0, res.err
        events = [json.loads(line) for line in res.out.splitlines()]
        r2 = [e["val_r2_score"] for e in events if e["event"] == "epoch"]
        first[scale] = next((i + 1 for i, v in enumerate(r2) if v >= 0.9), None)
        runs[scale] = Path(events[-1]["run_dir"])
    assert first["standard"] is not None
    assert first["none"] is None or first["none"] > first["standard"]
    run_dir = runs["standard"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["target_normalize"]["mean"] == pytest.approx(300, abs=15)
    # Plain Keras, without nntrain: the model's outputs are in the target's own units.
    import keras

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.layers[-1].name == "target_unscale"
    pred = model.predict(x[:50].astype(np.float32), verbose=0).reshape(-1)
    assert np.abs(pred - y[:50]).mean() < 30  # a std of ~75 around 300
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ev = cli("eval", run_dir, "--json")
    assert ev.code == 0, ev.err
    assert json.loads(ev.out)["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)


def test_target_normalize_on_a_classifier_is_a_config_error(cli, write):
    res = cli("train", write("c.yaml", TINY.replace("samples: 200", "samples: 200\n  "
                                                    "target_normalize: standard")))
    assert res.code == 2 and res.out == ""
    assert "c.yaml:5:21: data.target_normalize: scales a regression target; " \
           "binary_crossentropy is a classification loss" in res.err


FOLDS = TINY.replace("split: {validation: 0.1, test: 0.2}", "split: {test: 0.2, folds: 5}") \
    .replace("epochs: 2", "epochs: 1").replace("name: tiny", "name: tiny\n  plots: false")


def test_five_folds_report_each_fold_and_their_mean_and_std(cli, write, tmp_path):
    res = cli("train", write("k.yaml", FOLDS), "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    run_dir = Path(doc["run_dir"])
    folds = [json.loads((run_dir / "folds" / f"fold-{k}" / "metrics.json").read_text())
             for k in range(1, 6)]
    assert [f["fold"] for f in doc["folds"]] == [1, 2, 3, 4, 5]
    for split in ("train", "validation", "test"):
        for name in ("loss", "accuracy"):
            values = [f[split][name] for f in folds]
            assert [f[split][name] for f in doc["folds"]] == values
            assert doc["metrics"][split][name] == pytest.approx(np.mean(values), rel=1e-12)
            assert doc["std"][split][name] == pytest.approx(np.std(values), rel=1e-9, abs=1e-12)
    assert json.loads((run_dir / "metrics.json").read_text())["validation"] == \
        doc["metrics"]["validation"]
    # 160 non-test rows: each fold validates on 32 of them and trains on the other 128.
    rows = [json.loads((run_dir / "folds" / f"fold-{k}" / "manifest.json").read_text())
            ["data"]["rows"] for k in range(1, 6)]
    assert rows == [{"train": 128, "validation": 32, "test": 40}] * 5
    # eval and predict use the fold the run names.
    best = doc["model_fold"]
    assert doc["metrics"]["validation"]["loss"] >= folds[best - 1]["validation"]["loss"]
    ev = cli("eval", run_dir, "--json")
    assert ev.code == 0, ev.err
    assert json.loads(ev.out)["loss"] == pytest.approx(folds[best - 1]["test"]["loss"],
                                                       rel=1e-6)
    assert "validation metrics of 5 folds (eval and predict use fold" in res.err
    assert "mean ± std" in res.err


def test_folds_with_a_validation_fraction_is_a_config_error(cli, write, tmp_path):
    res = cli("train", write("k.yaml", FOLDS.replace("test: 0.2, folds", "validation: 0.1, "
                                                     "test: 0.2, folds")))
    assert res.code == 2 and res.out == ""
    assert "data.split: with folds each fold is the validation rows of one model; remove " \
           "validation (got 0.1)" in res.err
    assert not (tmp_path / "runs").exists()
