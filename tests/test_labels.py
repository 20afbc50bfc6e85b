"""Integer class labels that are not 0..k-1 (-1/1; 1, 5, 9): mapped to class indices, recorded
in labels.json as numbers, and spoken back by eval and predict."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

CONFIG = """
data: {{source: {source}, path: {path}, {target}split: {{test: 0.25}}{extra}}}
model:
  layers:
    - {{type: dense, units: 8, activation: relu}}
    - {{type: dense, units: {units}, activation: {activation}}}
training:
  loss: {loss}
  optimizer: {{name: adam, learning_rate: 0.05}}
  metrics: [accuracy]
  epochs: 2
output: {{name: run, plots: false}}
"""


def clusters(rows: int, values: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable clusters in two inputs, one per value, labelled with those values."""
    rs = np.random.RandomState(seed)
    k = rs.randint(0, len(values), rows)
    x = (rs.randn(rows, 2) * 0.3 + np.stack([k, -k], axis=1)).astype(np.float32)
    return x, np.asarray(values)[k]


def write_csv(path, x: np.ndarray, y: np.ndarray):
    path.write_text("a,b,y\n" + "".join(f"{a!r},{b!r},{t}\n" for (a, b), t in
                                         zip(x.tolist(), y.tolist())))
    return path


def config(write, path: str, units: int, *, source: str = "csv", stream: bool = False):
    binary = units == 1
    return write("run.yaml", textwrap.dedent(CONFIG.format(
        source=source, path=path, target="target: y, " if source == "csv" else "",
        extra=", stream: true" if stream else "", units=units,
        activation="sigmoid" if binary else "softmax",
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")))


def labels_json(tmp_path):
    path = tmp_path / "runs/run/labels.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_minus_one_and_one_train_a_binary_model_and_come_back_from_predict(cli, write,
                                                                         tmp_path):
    x, y = clusters(160, [-1, 1])
    write_csv(tmp_path / "d.csv", x, y)
    res = cli("train", config(write, "d.csv", 1), "-q")
    assert res.code == 0, res.err
    assert labels_json(tmp_path) == [-1, 1]
    res = cli("predict", "runs/run", "--data", "d.csv")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == "y,p_-1,p_1"
    assert {line.split(",")[0] for line in lines[1:]} == {"-1", "1"}
    res = cli("predict", "runs/run", "--data", "d.csv", "--format", "jsonl")
    predicted = [json.loads(line)["y"] for line in res.out.splitlines()]
    assert set(predicted) == {-1, 1} and all(type(v) is int for v in predicted)


def test_gaps_with_three_units_round_trip_through_eval_and_predict(cli, write, tmp_path):
    x, y = clusters(200, [1, 5, 9])
    write_csv(tmp_path / "d.csv", x, y)
    # Enough epochs that the accuracy below tells mapped classes from crossed ones on either
    # backend: after 2, the JAX backend's initial weights left it at 0.63.
    res = cli("train", config(write, "d.csv", 3), "--set", "training.epochs=8")
    assert res.code == 0, res.err
    assert "note: class labels 1, 5, 9 are mapped to class indices 0 to 2" in res.err
    assert labels_json(tmp_path) == [1, 5, 9]

    res = cli("eval", "runs/run", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    recorded = json.loads((tmp_path / "runs/run/metrics.json").read_text())["test"]
    assert doc["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert doc["classes"] == ["1", "5", "9"] and set(doc["per_class"]) == {"1", "5", "9"}

    # Another file with the same labels scores on the same classes: the file's 9s are class 2.
    x2, y2 = clusters(90, [1, 5, 9], seed=3)
    write_csv(tmp_path / "new.csv", x2, y2)
    res = cli("eval", "runs/run", "--data", "new.csv", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert [row[0] + row[1] + row[2] for row in doc["confusion_matrix"]] == \
        [int((y2 == v).sum()) for v in (1, 5, 9)]
    assert doc["accuracy"] > 0.8

    res = cli("predict", "runs/run", "--data", "new.csv", "--format", "jsonl")
    assert res.code == 0, res.err
    records = [json.loads(line) for line in res.out.splitlines()]
    assert set(records[0]) == {"y", "p_1", "p_5", "p_9"}
    predicted = [r["y"] for r in records]
    assert set(predicted) <= {1, 5, 9} and all(type(v) is int for v in predicted)
    assert np.mean(np.asarray(predicted) == y2) > 0.8
    res = cli("predict", "runs/run", "--data", "new.csv")
    assert res.out.splitlines()[0] == "y,p_1,p_5,p_9"
    assert {line.split(",")[0] for line in res.out.splitlines()[1:]} <= {"1", "5", "9"}


@pytest.mark.parametrize("values", [[0, 1, 2], [0, 2]])
def test_labels_that_fit_the_output_units_are_class_indices_as_they_are(cli, write, tmp_path,
                                                                        values):
    x, y = clusters(150, values)
    write_csv(tmp_path / "d.csv", x, y)
    res = cli("train", config(write, "d.csv", 3))
    assert res.code == 0, res.err
    assert "mapped to class indices" not in res.err
    assert labels_json(tmp_path) is None
    res = cli("predict", "runs/run", "--data", "d.csv", "--format", "jsonl")
    assert set(json.loads(res.out.splitlines()[0])) == {"y", "p_0", "p_1", "p_2"}
    assert {json.loads(line)["y"] for line in res.out.splitlines()} <= {0, 1, 2}


def test_eval_data_with_a_label_the_run_never_saw_is_a_data_error(cli, write, tmp_path):
    x, y = clusters(120, [1, 5, 9])
    write_csv(tmp_path / "d.csv", x, y)
    assert cli("train", config(write, "d.csv", 3), "-q").code == 0
    write_csv(tmp_path / "new.csv", x[:4], np.asarray([1, 7, 9, 7]))
    res = cli("eval", "runs/run", "--data", "new.csv")
    missing = cli("eval", "runs/run", "--data", "nothing.csv")
    assert res.code == missing.code == 2
    assert res.out == ""
    assert res.err.strip() == ("new.csv: column 'y': unknown label 7 (2 rows); the model knows "
                               "1, 5, 9")
    (tmp_path / "text.csv").write_text("a,b,y\n0.1,0.2,5\n0.3,0.4,cat\n")
    res = cli("eval", "runs/run", "--data", "text.csv")
    assert res.code == 2
    assert res.err.strip() == ("text.csv: column 'y': the labels are text ('cat'), but the run "
                               "was trained on numeric labels (1, 5, 9)")


def test_npz_integer_labels_with_gaps_are_mapped(cli, write, tmp_path):
    x, y = clusters(150, [2, 4, 8])
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.int32))
    res = cli("train", config(write, "d.npz", 3, source="npz"), "-q")
    assert res.code == 0, res.err
    assert labels_json(tmp_path) == [2, 4, 8]
    res = cli("eval", "runs/run", "--data", "d.npz", "--json", "-q")
    assert res.code == 0, res.err
    assert json.loads(res.out)["classes"] == ["2", "4", "8"]


def test_streamed_labels_are_mapped_in_the_pipeline(cli, write, tmp_path):
    x, y = clusters(300, [-1, 1])
    write_csv(tmp_path / "d.csv", x, y)
    res = cli("train", config(write, "d.csv", 1, stream=True), "-q")
    assert res.code == 0, res.err
    assert labels_json(tmp_path) == [-1, 1]
    metrics = json.loads((tmp_path / "runs/run/metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9  # -1 rows are class 0, not clipped to it
    res = cli("eval", "runs/run", "--json", "-q")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["classes"] == ["-1", "1"]
    assert doc["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)


def test_streamed_labels_with_too_many_distinct_values_to_map(cli, write, tmp_path, monkeypatch):
    monkeypatch.setattr("nntrain.data.stream.MAX_LABELS", 2)
    x, y = clusters(60, [1, 5, 9])
    write_csv(tmp_path / "d.csv", x, y)
    res = cli("train", config(write, "d.csv", 3, stream=True))
    assert res.code == 2 and not (tmp_path / "runs/run").exists()
    assert "the class labels run from 1 to 9, not 0 to 2, and have more than 2 distinct " \
        "values to map to class indices" in res.err


@pytest.mark.parametrize("values, units, message", [
    ([1, 2, 3], 1, "binary_crossentropy needs labels 0 and 1, but the data has 3 classes"),
    ([-1, 1, 4, 6], 3, "the labels have 4 classes but the output layer has 3 units; use "
                       "units: 4"),
])
def test_mapped_labels_still_have_to_fit_the_loss(cli, write, tmp_path, values, units, message):
    x, y = clusters(60, values)
    write_csv(tmp_path / "d.csv", x, y)
    res = cli("train", config(write, "d.csv", units))
    assert res.code == 2
    assert message in res.err


def test_output_units_beyond_mapped_labels_get_names_no_label_has(cli, write, tmp_path):
    x, y = clusters(80, [-1, 3])
    write_csv(tmp_path / "d.csv", x, y)
    assert cli("train", config(write, "d.csv", 4), "-q").code == 0
    assert labels_json(tmp_path) == [-1, 3]
    res = cli("predict", "runs/run", "--data", "d.csv")
    assert res.out.splitlines()[0] == "y,p_-1,p_3,p_4,p_5"  # not p_2, p_3: 3 is a label
