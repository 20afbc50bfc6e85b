"""Data beyond one CSV file: NPZ/NPY, separate split files, missing values, normalization
carried inside the model, streaming, and generate-data's formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import TINY
from nntrain.config.schema import Split
from nntrain.data.csvfile import parse_csv, read_csv
from nntrain.errors import DataError

NNTRAIN = [sys.executable, "-m", "nntrain"]

# TINY's model and training, into runs/run without pictures.
MODEL = TINY[TINY.index("model:"):].replace("name: tiny", "name: run") + "  plots: false\n"


def config(write, data: str, name: str = "run.yaml", model: str = MODEL):
    return write(name, textwrap.dedent(data).strip("\n") + "\n" + textwrap.dedent(model))


def csv_text(x: np.ndarray, y: np.ndarray, names: str = "a,b") -> str:
    rows = "".join(",".join(repr(float(v)) for v in r) + f",{int(t)}\n" for r, t in zip(x, y))
    return f"{names},y\n" + rows


def moons(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from nntrain.data.synthetic import generate

    return generate("moons", n, None, 2, 0.1, seed)


def manifest(tmp_path, name: str = "run") -> dict:
    return json.loads((tmp_path / "runs" / name / "manifest.json").read_text())


# --- generate-data formats ---------------------------------------------------------------

def test_generate_npz_is_byte_identical_for_a_seed_and_holds_named_arrays(cli, tmp_path):
    for name, seed in (("a.npz", 3), ("b.npz", 3), ("c.npz", 4)):
        res = cli("generate-data", "blobs", "-n", "50", "-c", "3", "--seed", seed, "-o", name)
        assert res.code == 0, res.err
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.npz", "b.npz", "c.npz"))
    assert a == b and a != c
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert z.files == ["x", "y", "feature_names"]
        assert z["x"].shape == (50, 2) and z["x"].dtype == np.float32
        assert z["y"].dtype == np.int64 and set(z["y"]) <= {0, 1, 2}
        assert z["feature_names"].tolist() == ["x0", "x1"]
    # The same arrays as the CSV of the same seed.
    res = cli("generate-data", "blobs", "-n", "50", "-c", "3", "--seed", 3, "-o", "a.csv")
    assert res.code == 0, res.err
    table = read_csv(tmp_path / "a.csv", "y")
    with np.load(tmp_path / "a.npz") as z:
        np.testing.assert_array_equal(table.x, z["x"])
        np.testing.assert_array_equal(table.y, z["y"])


def test_generate_npz_to_stdout_matches_the_file(cli, tmp_path):
    # Only the pipe needs a process of its own.
    piped = subprocess.run([*NNTRAIN, "generate-data", "moons", "-n", "30", "--format", "npz"],
                           capture_output=True, check=True).stdout
    assert cli("generate-data", "moons", "-n", "30", "-o", tmp_path / "m.npz").code == 0
    assert piped == (tmp_path / "m.npz").read_bytes()
    assert zipfile.ZipFile(io.BytesIO(piped)).getinfo("x.npy").date_time == (1980, 1, 1, 0, 0, 0)


@pytest.mark.parametrize("args, message", [
    (["-o", "d.parquet"], "cannot tell the format from '.parquet'.*Parquet is not supported"),
    (["--format", "feather"], "--format: expected one of csv, npz, got 'feather'"),
    (["--format", "nzp"], "--format: expected one of csv, npz, got 'nzp' .did you mean 'npz'.."),
])
def test_generate_unknown_formats_are_usage_errors(cli, tmp_path, args, message):
    res = cli("generate-data", "moons", *args)
    assert res.code == 2 and res.out == ""
    assert __import__("re").search(message, res.err), res.err
    assert list(tmp_path.iterdir()) == []


# --- NPZ and NPY -------------------------------------------------------------------------

def test_train_on_npz_with_named_arrays_and_chosen_features(cli, write, tmp_path):
    x, y = moons()
    noise = np.random.RandomState(0).rand(len(x), 1).astype(np.float32)
    np.savez(tmp_path / "d.npz", inputs=np.hstack([x, noise]), labels=y,
             feature_names=np.array(["u", "v", "junk"]))
    cfg = config(write, """
        data:
          source: npz
          path: d.npz
          x: inputs
          y: labels
          features: [0, 1]
    """)
    res = cli("train", cfg, "-q")
    assert res.code == 0, res.err
    m = manifest(tmp_path)
    assert m["data"]["features"] == ["u", "v"]
    assert sum(m["data"]["rows"].values()) == 200 and m["data"]["rows"]["test"] == 40


@pytest.mark.parametrize("arrays, data, message", [
    ({"x": np.zeros((4, 2)), "y": np.zeros(4)}, "y: labels",
     r"d.npz: no array 'labels' \(data.y\); the archive holds: x, y"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, "",
     r"d.npz: array 'x' has 4 rows but 'y' has 3; x and y need one row per sample"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, None, 1], dtype=object)}, "",
     r"d.npz: array 'y' holds Python objects \(a pickled object array\); nntrain never loads "
     r"pickles"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(4)}, "features: [0, 5]",
     r"d.npz: data.features: column 5 does not exist; array 'x' has 2 columns \(0 to 1\)"),
    ({"x": np.array([[0, 1], [np.nan, 2]]), "y": np.zeros(2)}, "",
     r"d.npz: array 'x' row 1, column 0: nan is not a finite number; to accept missing "
     r"values, set data.missing"),
])
def test_bad_npz_is_one_line_naming_the_file(cli, write, tmp_path, arrays, data, message):
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = config(write, f"""
        data:
          source: npz
          path: d.npz
          {data}
    """)
    res = cli("train", cfg)
    assert res.code == 2 and res.out == ""
    assert len(res.err.strip().splitlines()) == 1
    assert __import__("re").search(message, res.err), res.err
    assert not (tmp_path / "runs" / "run").exists()


def test_train_on_npy_pairs_with_separate_test_files(cli, write, tmp_path):
    x, y = moons(250)
    np.save(tmp_path / "x.npy", x[:200])
    np.save(tmp_path / "y.npy", y[:200])
    np.save(tmp_path / "xt.npy", x[200:])
    np.save(tmp_path / "yt.npy", y[200:])
    cfg = config(write, """
        data:
          source: npy
          x_path: x.npy
          y_path: y.npy
          test: {x_path: xt.npy, y_path: yt.npy}
          split: {validation: 0.1}
    """)
    res = cli("train", cfg, "-q")
    assert res.code == 0, res.err
    assert manifest(tmp_path)["data"]["rows"] == {"train": 180, "validation": 20, "test": 50}
    resolved = (tmp_path / "runs" / "run" / "config.yaml").read_text()
    assert f"x_path: {tmp_path / 'xt.npy'}" in resolved and "test: 0.0" in resolved


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((4, 2)), np.zeros(3),
     "x.npy: has 4 rows but y.npy has 3; x and y need one row per sample"),
    (np.zeros((4, 2)), np.array(["a", None, "b", "c"], dtype=object),
     "y.npy: holds Python objects (a pickled object array); nntrain never loads pickles"),
    (np.zeros((4, 2)), np.zeros((4, 3)), "y.npy: the array must hold one target per row"),
])
def test_bad_npy_pairs(cli, write, tmp_path, x, y, message):
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y, allow_pickle=True)
    res = cli("validate", config(write, "data: {source: npy, x_path: x.npy, y_path: y.npy}"))
    assert res.code == 2 and message in res.err, res.err


def test_npz_from_a_pipe(cli, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: {source: npz, path: unused.npz}\n" + textwrap.dedent(MODEL))
    # The archive is made here (test_generate_npz_to_stdout_matches_the_file pipes it); only the
    # reading end needs a process of its own, its standard input a pipe.
    assert cli("generate-data", "moons", "-n", "200", "-o", "m.npz").code == 0
    res = subprocess.run([*NNTRAIN, "train", cfg, "--data", "-", "--json", "-q"],
                         input=(tmp_path / "m.npz").read_bytes(), capture_output=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    assert set(json.loads(res.stdout)["metrics"]) == {"train", "test"}
    assert json.loads((tmp_path / "runs/run/manifest.json").read_text())["data"]["source"] == \
        "<stdin>"


# --- separate split files ----------------------------------------------------------------

@pytest.mark.parametrize("stream", ["false", "true"])
def test_separate_validation_and_test_csv_files(cli, write, tmp_path, stream):
    x, y = moons(300)
    (tmp_path / "train.csv").write_text(csv_text(x[:200], y[:200]))
    (tmp_path / "val.csv").write_text(csv_text(x[200:240], y[200:240]))
    # The same columns in another order: found by name.
    (tmp_path / "test.csv").write_text(csv_text(x[240:, ::-1], y[240:], names="b,a"))
    cfg = config(write, f"""
        data:
          source: csv
          path: train.csv
          target: y
          validation_path: val.csv
          test_path: test.csv
          stream: {stream}
    """, model=MODEL.replace("epochs: 2", "epochs: 10"))
    res = cli("train", cfg)
    assert res.code == 0, res.err
    assert "train.csv (validation: val.csv, test: test.csv)" in res.err or \
        "train.csv, validation: val.csv, test: test.csv (streamed)" in res.err
    assert "200 train / 40 validation / 60 test rows" in res.err
    metrics = json.loads((tmp_path / "runs/run/metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.75  # the test file's columns were matched by name
    # The resolved config trains again as it is.
    assert cli("validate", tmp_path / "runs" / "run" / "config.yaml").code == 0


def test_a_fraction_for_a_split_that_has_its_own_file_is_a_config_error(cli, write, tmp_path):
    x, y = moons(50)
    (tmp_path / "train.csv").write_text(csv_text(x, y))
    cfg = config(write, """
        data:
          source: csv
          path: train.csv
          target: y
          test_path: train.csv
          split: {test: 0.3}
    """)
    res = cli("validate", cfg.name)
    assert res.code == 2
    assert res.err.startswith("run.yaml:6:17: data.split.test: the test rows come from "
                              "data.test_path, so split.test must be 0"), res.err


def test_text_labels_are_one_mapping_across_files(cli, write, tmp_path):
    (tmp_path / "train.csv").write_text("a,kind\n" + "".join(
        f"{i % 7},{['cat', 'dog'][i % 2]}\n" for i in range(60)))
    (tmp_path / "test.csv").write_text("a,kind\n1,emu\n2,dog\n")
    cfg = config(write, """
        data: {source: csv, path: train.csv, target: kind, test_path: test.csv}
    """, model=MODEL.replace("units: 1, activation: sigmoid", "units: 3, activation: softmax")
                   .replace("binary_crossentropy", "sparse_categorical_crossentropy"))
    res = cli("train", cfg, "-q")
    assert res.code == 0, res.err
    assert json.loads((tmp_path / "runs/run/labels.json").read_text()) == ["cat", "dog", "emu"]


# --- missing values ----------------------------------------------------------------------

HOLES = "a,b,y\n1,2,0\n3,,1\n5,6,0\n7,nan,1\n9,10,0\n11,inf,1\n" + "".join(
    f"{i},{i + 1},{i % 2}\n" for i in range(20, 60))


def test_missing_values_are_errors_with_the_line_unless_a_policy_is_named(cli, write, tmp_path):
    (tmp_path / "d.csv").write_text(HOLES)
    cfg = config(write, "data: {source: csv, path: d.csv, target: y}")
    res = cli("train", cfg)
    assert res.code == 2
    assert res.err.strip() == ("d.csv:3: column 'b': is empty; to accept missing values, set "
                               "data.missing to drop, mean or {fill: VALUE}")


@pytest.mark.parametrize("policy, rows, fill", [
    ("drop", 43, None),
    ("{fill: -1}", 46, [-1.0, -1.0]),
    ("mean", 46, "mean"),
])
def test_missing_value_policies(cli, write, tmp_path, policy, rows, fill):
    (tmp_path / "d.csv").write_text(HOLES)
    cfg = config(write, f"""
        data:
          source: csv
          path: d.csv
          target: y
          missing: {policy}
          split: {{test: 0.0, validation: 0.0}}
    """)
    res = cli("train", cfg)
    assert res.code == 0, res.err
    assert manifest(tmp_path)["data"]["rows"]["train"] == rows
    recorded = json.loads((tmp_path / "runs/run/preprocessing.json").read_text())
    assert recorded["features"] == ["a", "b"]
    if policy == "drop":
        assert recorded["missing"] == {"policy": "drop", "dropped_rows": 3}
        assert "note: dropped 3 rows with missing values (data.missing: drop)" in res.err
    elif fill == "mean":
        b = [2, 6, 10] + [i + 1 for i in range(20, 60)]
        a = [1, 3, 5, 7, 9, 11] + list(range(20, 60))
        assert recorded["missing"]["policy"] == "mean"
        np.testing.assert_allclose(recorded["missing"]["fill"], [np.mean(a), np.mean(b)])
    else:
        assert recorded["missing"] == {"policy": "fill", "fill": fill}


def test_a_missing_target_can_only_be_dropped(cli, write, tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,4,\n")
    cfg = config(write, "data: {source: csv, path: d.csv, target: y, missing: mean}")
    res = cli("train", cfg)
    assert res.code == 2
    assert res.err.strip() == ("d.csv:3: column 'y': the target is empty; a missing target "
                               "cannot be filled in; set data.missing: drop to drop such rows")


def test_missing_policy_names_are_checked(cli, write):
    cfg = config(write, "data: {source: csv, path: d.csv, target: y, missing: zero}")
    res = cli("validate", cfg)
    assert res.code == 2
    assert "data.missing: expected error, drop, mean or {fill: VALUE}, got 'zero'" in res.err


# --- normalization inside the model ------------------------------------------------------

def offset_data(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with large offsets and wildly different scales: unlearnable without scaling."""
    rs = np.random.RandomState(1)
    z = rs.randn(n, 2)
    x = z * [2000.0, 0.002] + [1.0e5, -30.0]
    return x, (z[:, 0] + z[:, 1] > 0).astype(np.int64)


# Plain Keras in a process where nntrain is not on the path: each model file named after the
# CSV file, evaluated on its last 80 rows.
REFERENCE = """
import json, sys
import numpy as np, keras
rows = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, dtype=np.float32)
x, y = rows[:, :-1], rows[:, -1]
out = []
for path in sys.argv[2:]:
    model = keras.models.load_model(path)
    model.compile(loss="binary_crossentropy", metrics=["accuracy"])
    loss, acc = model.evaluate(x[-80:], y[-80:], verbose=0)
    first = model.layers[0]
    out.append({"loss": loss, "accuracy": acc, "layer": type(first).__name__,
                "out": np.asarray(first(x[:-80])).tolist()})
print(json.dumps({"models": out, "nntrain": any(m.startswith("nntrain") for m in sys.modules)}))
"""

NORMALIZE = ("standard", "minmax")


@pytest.fixture(scope="module")
def normalized(tmp_path_factory):
    """kind -> (metrics.json of a run on offset_data normalized that way, plain Keras's view of
    its model.keras): both runs trained in this process, both models read by one other."""
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("normalized")
    x, y = offset_data()
    (root / "d.csv").write_text(csv_text(x, y))
    runs = {}
    for kind in NORMALIZE:
        cfg = root / f"{kind}.yaml"
        cfg.write_text(textwrap.dedent(f"""
            data:
              source: csv
              path: d.csv
              target: y
              normalize: {kind}
              split: {{test: 0.2, shuffle: false}}
        """).strip("\n") + "\n" + textwrap.dedent(MODEL.replace("epochs: 2", "epochs: 15")))
        assert main(["train", str(cfg), "-q", "--set", f"output.dir={root / 'runs'}",
                     "--set", f"output.name={kind}"]) == 0, f"training {kind} failed"
        runs[kind] = root / "runs" / kind
    out = subprocess.run([sys.executable, "-c", REFERENCE, root / "d.csv",
                          *(runs[kind] / "model.keras" for kind in NORMALIZE)],
                         capture_output=True, text=True, cwd=root,
                         env={"KERAS_BACKEND": os.environ["KERAS_BACKEND"],
                              "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    ref = json.loads(out.stdout)
    assert not ref["nntrain"]
    return {kind: (json.loads((runs[kind] / "metrics.json").read_text()), model)
            for kind, model in zip(NORMALIZE, ref["models"])}


@pytest.mark.parametrize("kind", NORMALIZE)
def test_normalization_is_inside_the_saved_model(normalized, kind):
    metrics, ref = normalized[kind]
    assert metrics["test"]["accuracy"] > 0.9  # learnable only once the inputs are scaled
    assert ref["layer"] == "Normalization"
    assert ref["loss"] == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    assert ref["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    scaled = np.asarray(ref["out"])  # the training rows after the first layer
    if kind == "standard":
        np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-3)
        np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-3)
    else:
        np.testing.assert_allclose(scaled.min(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(scaled.max(axis=0), 1, atol=1e-5)


# --- streaming ---------------------------------------------------------------------------

def test_stream_row_assignment_is_the_same_in_numpy_and_tensorflow():
    import tensorflow as tf

    from nntrain.data import stream

    index = np.arange(50_000, dtype=np.int64)
    split = Split(validation=0.1, test=0.2)
    parts = stream.row_parts(index, split, seed=7, file_rows=len(index))
    rows = stream.StreamedRows("", "", None, None, split, 7, len(index), 0, None)
    assert np.array_equal(parts, stream._tf_parts(tf.constant(index), rows).numpy())
    counts = np.bincount(parts, minlength=3) / len(index)
    np.testing.assert_allclose(counts, [0.7, 0.1, 0.2], atol=0.01)
    assert not np.array_equal(parts, stream.row_parts(index, split, 8, len(index)))


STREAMED = """
    data:
      source: csv
      path: big.csv
      target: y
      stream: true
      split: {validation: 0.1, test: 0.2}
"""


def test_stream_trains_from_the_file_like_loading_it(cli, write, tmp_path):
    x, y = moons(3000)
    (tmp_path / "big.csv").write_text(csv_text(x, y))
    cfg = config(write, STREAMED)
    res = cli("train", cfg)
    assert res.code == 0, res.err
    assert "big.csv (streamed)" in res.err
    m = manifest(tmp_path)
    rows = m["data"]["rows"]
    assert sum(rows.values()) == 3000
    assert abs(rows["test"] - 600) < 90 and abs(rows["validation"] - 300) < 60
    metrics = json.loads((tmp_path / "runs/run/metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    # The splits are what the pipelines deliver.
    from nntrain.config import load_config
    from nntrain.training.prepare import prepare

    ds = prepare(load_config(cfg)).dataset
    for split in ("train", "validation", "test"):
        data = ds.inputs(split, 64)["x"]
        assert sum(int(b[0].shape[0]) for b in data) == len(ds.split(split)[0])


def test_stream_with_ordered_split_drop_policy_and_normalization(cli, write, tmp_path):
    x, y = offset_data(1000)
    text = csv_text(x, y).splitlines(keepends=True)
    text[5] = "nan,1.0,1\n"
    text[7] = "\n"  # blank lines are not rows
    (tmp_path / "big.csv").write_text("".join(text))
    cfg = config(write, STREAMED.replace("{validation: 0.1, test: 0.2}",
                                         "{test: 0.2, shuffle: false}")
                 + "      missing: drop\n      normalize: standard\n")
    res = cli("train", cfg)
    assert res.code == 0, res.err
    assert "note: dropped 1 row with missing values" in res.err
    assert manifest(tmp_path)["data"]["rows"] == {"train": 798, "validation": 0, "test": 200}


@pytest.mark.parametrize("text, where, message", [
    ("a,b,y\n1,2,0\n3,4,cat\n", "big.csv:3:", "column 'y': 'cat' is not a number; streamed data "
     "needs numeric labels (class indices 0, 1, ...); map the labels to numbers, or set "
     "data.stream: false to load the file whole (text labels work then)"),
    ("a,b,y\n1,2,0\n3,x,1\n", "big.csv:3:", "column 'b': 'x' is not a number"),
])
def test_stream_checks_every_cell_before_training(cli, write, tmp_path, text, where, message):
    (tmp_path / "big.csv").write_text(text)
    res = cli("train", config(write, STREAMED))
    assert res.code == 2 and not (tmp_path / "runs" / "run").exists()
    assert res.err.strip() == f"{where} {message}"


def test_stream_from_stdin_or_stratified_is_a_config_error(cli, write, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a,b,y\n1,2,0\n"))
    res = cli("train", config(write, STREAMED), "--data", "-")
    assert res.code == 2
    assert "data.stream: streaming reads the file again every epoch, and standard input can be " \
        "read only once" in res.err
    res = cli("train", config(write, STREAMED.replace("test: 0.2", "test: 0.2, stratify: true")))
    assert res.code == 2 and "data.split.stratify: streamed rows cannot be stratified" in res.err


# --- the CSV reader's two paths ----------------------------------------------------------

CSV_CASES = [
    "a,b,y\n1,2,0\n3,4,1\n",
    'a,b,y\r\n1, 2 ,0\r\n"3","4.5e1",1\r\n\r\n',
    "\ufeffa,b,y\n1,2,cat\n3,4,dog\n5,6, cat\n",
    "a,b,y\n1,2,0\n  \n3,4,1\n",
    "id,a,b,y\nfoo,1,2,0\nbar,3,4,1\n",
    "a,b,y\n1,2,0\n3,4,cat\n",
    "a,b,y\n1,,0\n4,5,1\n",
    "a,b,y\n1,nan,0\n",
    "a,b,y\n1,2,0\n3,4,5,6\n",
    "a,b,y\n1,2,\n",
    "a,b,y\n1_0,2,1\n",
    "a,b,y\n1,2,-inf\n",
]


@pytest.mark.parametrize("missing", ["error", "keep", "drop"])
@pytest.mark.parametrize("text", CSV_CASES)
def test_fast_and_exact_csv_readers_agree(tmp_path, text, missing):
    """numpy's parser is only an optimization: same numbers, same errors, same lines."""

    def outcome(read):
        try:
            t = read()
        except DataError as exc:
            return ("error", str(exc), exc.problems[0].line, exc.hint)
        return (t.x.tolist(), t.y.tolist(), t.y.dtype.str, t.labels, t.feature_names)

    path = tmp_path / "d.csv"
    path.write_bytes(text.encode("utf-8"))
    exact = outcome(lambda: parse_csv(io.StringIO(text.lstrip("\ufeff")), "y", None, "d.csv",
                                      missing=missing))
    fast = outcome(lambda: read_csv(path, "y", None, "d.csv", missing=missing))
    assert repr(fast) == repr(exact)


def test_large_csv_chunks_keep_line_numbers(tmp_path, monkeypatch):
    from nntrain.data import csvfile

    monkeypatch.setattr(csvfile, "CHUNK_LINES", 7)
    lines = ["a,b,y"] + [f"{i},{i},{i % 2}" for i in range(40)]
    lines[33] = "1,oops,0"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="column 'b': 'oops' is not a number") as exc:
        read_csv(tmp_path / "d.csv", "y")
    assert exc.value.problems[0].line == 34
    lines[33] = "1,1,0"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    assert read_csv(tmp_path / "d.csv", "y").x.shape == (40, 2)


def test_paths_on_the_command_line_are_relative_to_the_working_directory(cli, write, tmp_path):
    x, y = moons(300)
    (tmp_path / "train.csv").write_text(csv_text(x[:240], y[:240]))
    (tmp_path / "val.csv").write_text(csv_text(x[240:], y[240:]))
    cfg = config(write, """
        data: {source: csv, path: train.csv, target: y}
    """)
    # The config lives in another directory; the command runs here, where the files are.
    moved = tmp_path / "configs" / "run.yaml"
    moved.parent.mkdir()
    cfg.rename(moved)
    res = cli("train", "configs/run.yaml", "--data", "train.csv",
              "--set", "data.validation_path=val.csv")
    assert res.code == 0, res.err
    assert " 60 validation " in res.err
