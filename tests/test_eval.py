"""`nntrain eval` and loading models safely: the numbers, the streams, the refusals."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import yaml

from tiny_runs import ANIMALS, shared_runs, write_animals


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "binary", "animals", "sine", "gaps")


def keras_predict(run_dir, x):
    import keras

    return keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)


def test_eval_recreates_the_runs_test_rows(cli, runs):
    res = cli("eval", runs["binary"], "--json", "-q")
    assert res.code == 0, res.err
    assert res.err == ""
    doc = json.loads(res.out)  # exactly one JSON document
    recorded = json.loads((runs["binary"] / "metrics.json").read_text())["test"]
    assert doc["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert doc["loss"] == pytest.approx(recorded["loss"], rel=1e-6)
    manifest = json.loads((runs["binary"] / "manifest.json").read_text())
    assert doc["rows"] == manifest["data"]["rows"]["test"] == 40
    assert doc["data"] == "test" and doc["task"] == "binary"
    assert doc["classes"] == ["0", "1"]
    assert sum(map(sum, doc["confusion_matrix"])) == 40
    assert set(doc["per_class"]["1"]) == {"precision", "recall", "f1", "support"}


def test_eval_recreates_rows_with_missing_values(cli, runs):
    res = cli("eval", runs["gaps"], "--json", "-q")
    assert res.code == 0, res.err
    recorded = json.loads((runs["gaps"] / "metrics.json").read_text())["test"]
    doc = json.loads(res.out)
    assert doc["loss"] == pytest.approx(recorded["loss"], rel=1e-6)
    assert doc["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)


def test_eval_prints_tables_on_stderr_and_nothing_on_stdout(cli, runs):
    res = cli("eval", runs["animals"])
    assert res.code == 0, res.err
    assert res.out == ""
    assert "metrics" in res.err and "accuracy" in res.err
    assert "confusion matrix" in res.err and "per class" in res.err
    for label in ANIMALS:
        assert label in res.err


def test_eval_other_data_maps_text_labels_through_labels_json(cli, runs, tmp_path):
    # Only two of the three labels, in another order: the mapping must come from the run.
    data = write_animals(tmp_path / "new.csv", 50, seed=5, labels=["emu", "cat"])
    res = cli("eval", runs["animals"], "--data", data, "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["classes"] == ANIMALS and doc["rows"] == 50 and doc["data"] == str(data)
    cm = np.array(doc["confusion_matrix"])
    assert cm[1].sum() == 0, "no true 'dog' rows in this file"
    rows = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1), dtype=np.float32)
    text = [line.split(",")[2] for line in data.read_text().splitlines()[1:]]
    truth = np.array([ANIMALS.index(t) for t in text])
    predicted = keras_predict(runs["animals"], rows).argmax(axis=1)
    assert doc["accuracy"] == pytest.approx(float((predicted == truth).mean()), abs=1e-6)
    assert cm.trace() == (predicted == truth).sum()


def test_eval_unknown_label_is_a_data_error(cli, runs, tmp_path):
    data = tmp_path / "cow.csv"
    data.write_text("a,b,kind\n0.1,0.2,cat\n0.3,0.1,cow\n")
    res = cli("eval", runs["animals"], "--data", data)
    assert res.code == 2 and res.out == ""
    assert res.err.strip() == (f"{data}: column 'kind': unknown label 'cow' (1 row); the model "
                               "knows cat, dog, emu")


def test_eval_reads_standard_input(cli, runs, monkeypatch):
    rows = "x0,x1,y\n0.0,0.5,1\n1.0,0.0,0\n2.0,0.5,1\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(rows))
    res = cli("eval", runs["binary"], "--data", "-", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["rows"] == 3 and doc["data"] == "<stdin>"


def test_eval_regression_reports_mae_rmse_r2(cli, runs, tmp_path):
    res = cli("eval", runs["sine"], "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert {"loss", "mae", "rmse", "r2"} <= set(doc) and "confusion_matrix" not in doc
    # Check against the model on the same rows, given as a file.
    from nntrain.data.synthetic import generate

    x, y = generate("sine", 40, None, 2, 0.1, 3)
    data = tmp_path / "sine.csv"
    data.write_text("x0,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x[:, 0].tolist(),
                                                                         y.tolist())))
    doc = json.loads(cli("eval", runs["sine"], "--data", data, "--json", "-q").out)
    pred = keras_predict(runs["sine"], x)[:, 0].astype(np.float64)
    err = pred - y
    assert doc["rmse"] == pytest.approx(np.sqrt((err ** 2).mean()), rel=1e-5)
    assert doc["r2"] == pytest.approx(1 - (err ** 2).sum() / ((y - y.mean()) ** 2).sum(),
                                      rel=1e-5)
    assert doc["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)


def test_eval_a_bare_keras_file_with_named_metrics(cli, runs, tmp_path):
    model = tmp_path / "copy.keras"
    shutil.copy(runs["binary"] / "model.keras", model)
    data = tmp_path / "d.csv"
    data.write_text("x0,x1,label\n0.0,0.5,1\n1.0,0.0,0\n2.0,0.5,1\n-1,0.2,0\n")
    res = cli("eval", model, "--data", data, "--target", "label", "--loss",
              "binary_crossentropy", "--metrics", "accuracy,auc", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert {"loss", "accuracy", "auc"} <= set(doc) and doc["rows"] == 4
    # Without --data a bare file has nothing to score.
    res = cli("eval", model)
    assert res.code == 2 and "pass --data" in res.err


def test_eval_needs_the_data_the_run_was_trained_on(cli, runs, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(runs["animals"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    changed = write_animals(tmp_path / "changed.csv", 240, seed=9)
    config["data"]["path"] = str(changed)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    res = cli("eval", run)
    assert res.code == 2
    assert res.err.startswith(f"{changed}: the data changed since the run was trained")
    assert "--data" in res.err


# --- loading safely ----------------------------------------------------------------------

def test_missing_run_directory_is_one_line_exit_2(cli, tmp_path):
    res = cli("eval", "runs/nope")
    assert res.code == 2 and res.out == ""
    assert res.err == "runs/nope: no such run directory or model file\n"
    (tmp_path / "empty").mkdir()
    res = cli("eval", "empty")
    assert res.code == 2 and res.err == "empty: not a run directory: there is no model.keras in it\n"


def test_only_keras_files_are_accepted(cli, runs, tmp_path):
    other = tmp_path / "model.h5"
    shutil.copy(runs["binary"] / "model.keras", other)
    res = cli("eval", other, "--data", "x.csv")
    assert res.code == 2 and "not a .keras file" in res.err


def test_truncated_model_file_says_so_in_one_line(cli, runs, tmp_path):
    run = tmp_path / "broken"
    shutil.copytree(runs["binary"], run)
    blob = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(blob[: len(blob) // 2])
    res = cli("eval", run)
    assert res.code == 2
    assert res.err == (f"{run}/model.keras: truncated or corrupted model file (not a valid "
                       ".keras zip archive)\n")


def test_corrupted_weights_fail_their_checksum(cli, runs, tmp_path):
    model = tmp_path / "bad.keras"
    blob = bytearray((runs["binary"] / "model.keras").read_bytes())
    middle = len(blob) // 2
    blob[middle:middle + 64] = bytes(b ^ 0xFF for b in blob[middle:middle + 64])
    model.write_bytes(bytes(blob))
    res = cli("eval", model, "--data", "x.csv", "--loss", "binary_crossentropy")
    assert res.code == 2 and "corrupted model file" in res.err
    assert len(res.err.splitlines()) == 1


def test_a_lambda_layer_is_refused_and_its_code_never_runs(cli, tmp_path):
    """Loading the file must not run the code it carries. Built here, in the test's process:
    the file holds the Lambda's code as bytecode, whichever process saved it."""
    import keras

    marker = tmp_path / "code-ran"
    model = tmp_path / "lambda.keras"
    # The path is a constant of the code itself (a closure's or module's variable would not be
    # in the file), so that Keras's own unsafe load, safe_mode=False, does create the marker.
    layer = keras.layers.Lambda(eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]"))
    m = keras.Sequential([keras.Input((2,)), layer, keras.layers.Dense(1)])
    m.compile(loss="mse")
    m.save(model)
    marker.unlink()  # building the model ran the lambda once; start clean
    assert model.is_file() and not marker.exists()
    data = tmp_path / "d.csv"
    data.write_text("x0,x1,y\n1,2,3\n")
    for command in (["eval", model, "--data", data], ["predict", model, "--data", data]):
        res = cli(*command)
        assert res.code == 2 and res.out == ""
        assert "unsafe" in res.err and "Lambda" in res.err
        assert not marker.exists(), "the Lambda's code ran"


def test_eval_plot_draws_the_confusion_matrix(cli, runs, tmp_path):
    res = cli("eval", runs["animals"], "--plot", tmp_path / "cm.png", "-q")
    assert res.code == 0, res.err
    png = (tmp_path / "cm.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    res = cli("eval", runs["sine"], "--plot", tmp_path / "r.png")
    assert res.code == 2 and "only classifiers" in res.err
    assert not (tmp_path / "r.png").exists()
