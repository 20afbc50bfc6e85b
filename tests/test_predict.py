"""`nntrain predict`: one row out per row in, the user's labels, streaming, quiet pipes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from tiny_runs import ANIMALS, shared_runs, write_animals

NNTRAIN = [sys.executable, "-m", "nntrain"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "binary", "animals", "sine", "gaps")


def keras_predict(run_dir, x):
    import keras

    return keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)


def moons_csv(path, rows, seed=0):
    x = np.random.RandomState(seed).randn(rows, 2).astype(np.float32)
    path.write_text("x0,x1\n" + "".join(f"{a!r},{b!r}\n" for a, b in x.tolist()))
    return path, x


def test_csv_has_the_users_labels_and_keras_probabilities(cli, runs, tmp_path):
    data = write_animals(tmp_path / "in.csv", 30, seed=3)
    res = cli("predict", runs["animals"], "--data", data)
    assert res.code == 0, res.err
    assert res.err == ""
    table = list(csv.reader(io.StringIO(res.out)))
    assert table[0] == ["kind", "p_cat", "p_dog", "p_emu"]
    assert len(table) == 31
    x = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1), dtype=np.float32)
    expected = keras_predict(runs["animals"], x)
    probs = np.array([[float(v) for v in row[1:]] for row in table[1:]])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert [row[0] for row in table[1:]] == [ANIMALS[i] for i in expected.argmax(axis=1)]


def test_jsonl(cli, runs, tmp_path):
    data, x = moons_csv(tmp_path / "in.csv", 5)
    res = cli("predict", runs["binary"], "--data", data, "--format", "jsonl")
    assert res.code == 0, res.err
    records = [json.loads(line) for line in res.out.splitlines()]
    assert len(records) == 5 and set(records[0]) == {"y", "p_0", "p_1"}
    p1 = keras_predict(runs["binary"], x)[:, 0]
    for rec, p in zip(records, p1):
        assert rec["y"] == int(p > 0.5)  # class numbers stay numbers without labels.json
        assert rec["p_1"] == pytest.approx(p, abs=1e-5)
        assert rec["p_0"] + rec["p_1"] == pytest.approx(1.0)


def test_regression_values(cli, runs, tmp_path):
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    data = tmp_path / "in.csv"
    data.write_text("x0\n" + "".join(f"{v!r}\n" for v in x.tolist()))
    res = cli("predict", runs["sine"], "--data", data)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == "y"
    np.testing.assert_allclose([float(v) for v in lines[1:]],
                               keras_predict(runs["sine"], x[:, None])[:, 0], atol=1e-5)


def test_columns_are_found_by_name(cli, runs, tmp_path, monkeypatch):
    # Reordered columns, an extra one, no target: only the feature names matter.
    monkeypatch.setattr("sys.stdin", io.StringIO("id,x1,x0\n7,0.5,0.0\n8,0.0,1.0\n"))
    res = cli("predict", runs["binary"], "--data", "-")
    assert res.code == 0, res.err
    got = np.array([float(r.split(",")[2]) for r in res.out.splitlines()[1:]])
    expected = keras_predict(runs["binary"], np.array([[0.0, 0.5], [1.0, 0.0]], np.float32))
    np.testing.assert_allclose(got, expected[:, 0], atol=1e-5)


def test_missing_inputs_get_the_runs_fill_values(cli, runs, tmp_path):
    fill = json.loads((runs["gaps"] / "preprocessing.json").read_text())["missing"]["fill"]
    data = tmp_path / "in.csv"
    data.write_text("a,b\n0.2,\n,0.7\n0.9,0.9\n")
    res = cli("predict", runs["gaps"], "--data", data)
    assert res.code == 0, res.err
    x = np.array([[0.2, fill[1]], [fill[0], 0.7], [0.9, 0.9]], dtype=np.float32)
    got = [float(line.split(",")[2]) for line in res.out.splitlines()[1:]]
    np.testing.assert_allclose(got, keras_predict(runs["gaps"], x)[:, 0], atol=1e-5)
    # A run trained without a missing-value policy refuses them, naming the line.
    data.write_text("x0,x1\n0.2,\n")
    res = cli("predict", runs["binary"], "--data", data)
    assert res.code == 2 and res.err.startswith(f"{data}:2: column 'x1': is empty")


def test_input_errors_exit_2_before_any_output(cli, runs, tmp_path):
    res = cli("predict", runs["binary"])
    assert res.code == 2 and "--data" in res.err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    res = cli("predict", runs["binary"], "--data", bad)
    assert res.code == 2 and res.out == ""
    assert res.err.startswith(f"{bad}:1: no feature column 'x0'")
    res = cli("predict", runs["binary"], "--data", bad, "--format", "xml")
    assert res.code == 2 and "--format" in res.err


def test_it_streams_in_chunks(cli, runs, tmp_path):
    """A bad cell after the first chunk: the rows before it are already written."""
    from nntrain.data.csvfile import CHUNK_LINES

    data, x = moons_csv(tmp_path / "in.csv", CHUNK_LINES + 10)
    with open(data, "a") as fh:
        fh.write("1.0,oops\n")
    res = cli("predict", runs["binary"], "--data", data)
    assert res.code == 2
    assert res.err.strip() == f"{data}:{CHUNK_LINES + 12}: column 'x1': 'oops' is not a number"
    lines = res.out.splitlines()
    assert lines[0] == "y,p_0,p_1" and len(lines) - 1 == CHUNK_LINES  # the first chunk
    got = np.array([float(r.split(",")[2]) for r in lines[1:]])
    np.testing.assert_allclose(got, keras_predict(runs["binary"], x[:CHUNK_LINES])[:, 0],
                               atol=1e-5)


def test_pipe_into_head_ends_quietly(cli, runs, tmp_path):
    # The rows are generated here and piped in by cat: only predict needs a process of its own.
    assert cli("generate-data", "moons", "-n", "50000", "-o", "m.csv").code == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = (f"cat {tmp_path / 'm.csv'} | " + " ".join(NNTRAIN)
               + f" predict {runs['binary']} --data - | head -5")
    res = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
    lines = res.stdout.splitlines()
    assert lines[0] == "y,p_0,p_1" and len(lines) == 5
    assert "Traceback" not in res.stderr and "Error" not in res.stderr, res.stderr
