"""Tables with categorical columns: learned, saved as a plain Keras model that takes raw rows,
and used by eval and predict on raw CSV files."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


COLORS = ["red", "green", "blue", "yellow", "violet", "black"]
YES = {"red", "blue", "black"}  # the label is "yes" exactly for these colors

TABLE = """
data:
  source: csv
  path: table.csv
  target: label
  normalize: standard
  columns:
    zone: {type: categorical, encoding: embedding}
  split: {validation: 0.1, test: 0.25}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.05}
  metrics: [accuracy]
  epochs: 6
"""


def write_table(path, rows, seed=0, colors=COLORS):
    """Columns x1, color (text), zone (integer codes), x2, label; the label depends on the
    color only, so the numbers alone cannot predict it."""
    rs = np.random.RandomState(seed)
    color = [colors[i] for i in rs.randint(0, len(colors), rows)]
    zone = rs.randint(1, 5, rows) * 10
    x1, x2 = rs.randn(rows), rs.randn(rows) * 3 + 5
    lines = ["x1,color,zone,x2,label"] + [
        f"{a:.4f},{c},{z},{b:.4f},{'yes' if c in YES else 'no'}"
        for a, c, z, b in zip(x1, color, zone, x2)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The table run, and the same table with the numeric columns only (zone as a number)."""
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("tabular")
    write_table(root / "table.csv", 400)
    (root / "table.yaml").write_text(textwrap.dedent(TABLE).lstrip())
    out = {}
    # No pictures (no test looks at one); 20 rows a batch: every split (260, 40, 100 rows) is
    # whole batches, so each step compiles for one batch shape only.
    for name, extra in (("table", []),
                        ("numbers", ["--set", "data.features=[x1, zone, x2]",
                                     "--set", "data.columns=null"])):
        code = main(["train", str(root / "table.yaml"), "-q", "--set",
                     f"output.dir={root / 'runs'}", "--set", f"output.name={name}",
                     "--set", "output.plots=false", "--set", "training.batch_size=20", *extra])
        assert code == 0, f"training {name} failed"
        out[name] = root / "runs" / name
    return out


def test_a_label_that_depends_on_a_category_is_learned(runs):
    table = json.loads((runs["table"] / "metrics.json").read_text())
    numbers = json.loads((runs["numbers"] / "metrics.json").read_text())
    assert table["test"]["accuracy"] >= 0.95
    # The numbers carry nothing about the label: the numeric-only model stays near chance.
    assert numbers["test"]["accuracy"] <= 0.7
    plan = json.loads((runs["table"] / "columns.json").read_text())
    kinds = {c["name"]: (c["type"], c.get("values"), c.get("encoding"))
             for c in plan["columns"]}
    assert kinds == {"x1": ("numeric", None, None), "x2": ("numeric", None, None),
                     "color": ("categorical", "string", "one_hot"),
                     "zone": ("categorical", "integer", "embedding")}


# Runs in a fresh interpreter where importing nntrain fails: plain Keras only, on TensorFlow
# (the raw-row model takes text, and JAX has no string tensors; README, "Categorical columns").
# One list of predictions per model file on the command line.
PLAIN_KERAS_ENV = {"PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "KERAS_BACKEND": "tensorflow"}
PLAIN_KERAS = """
import json, sys
sys.modules["nntrain"] = None
import numpy as np, keras
rows = {"x1": np.array([0.1, -0.5, 0.3]), "x2": np.array([5.0, 4.0, 6.0]),
        "color": np.array(["red", "green", "purple"], dtype=object),
        "zone": np.array([10, 20, 99])}
print(json.dumps([keras.models.load_model(path).predict(rows, verbose=0)[:, 0].tolist()
                  for path in sys.argv[1:]]))
"""


@pytest.fixture(scope="module")
def resumed(runs, tmp_path_factory):
    """A copy of the table run, trained 2 epochs longer with `train --resume`; and its
    history.csv before."""
    import shutil

    import keras

    from nntrain.cli.app import main

    run = tmp_path_factory.mktemp("resumed") / "longer"
    shutil.copytree(runs["table"], run)
    before = (run / "history.csv").read_text()
    # As in the fresh process a user resumes in: Keras names layers by a per-process count.
    keras.backend.clear_session()
    assert main(["train", "--resume", str(run), "-q", "--set", "training.epochs=8"]) == 0
    return run, before


@pytest.fixture(scope="module")
def plain_keras(runs, resumed, tmp_path_factory):
    """The table run's and the resumed run's predictions on three raw rows, from plain Keras:
    one TensorFlow process for both."""
    models = {"table": runs["table"], "resumed": resumed[0]}
    done = subprocess.run([sys.executable, "-c", PLAIN_KERAS,
                           *(str(run / "model.keras") for run in models.values())],
                          cwd=tmp_path_factory.mktemp("plain"),
                          env={**os.environ, **PLAIN_KERAS_ENV},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(zip(models, json.loads(done.stdout)))


def test_the_saved_model_takes_raw_rows_in_plain_keras(plain_keras, runs, tmp_path, cli):
    keras_p = plain_keras["table"]
    assert keras_p[0] > 0.9 and keras_p[1] < 0.1  # red is yes, green is no
    assert 0.0 <= keras_p[2] <= 1.0  # purple and zone 99 were never seen: the unknown bucket
    # nntrain predict on the same rows as a CSV file gives the same numbers.
    (tmp_path / "new.csv").write_text("x1,color,zone,x2\n0.1,red,10,5.0\n-0.5,green,20,4.0\n"
                                      "0.3,purple,99,6.0\n")
    res = cli("predict", runs["table"], "--data", "new.csv")
    assert res.code == 0, res.err
    table = list(csv.reader(io.StringIO(res.out)))
    assert table[0] == ["label", "p_no", "p_yes"]
    assert [row[0] for row in table[1:3]] == ["yes", "no"]
    np.testing.assert_allclose([float(row[2]) for row in table[1:]], keras_p, atol=1e-5)


def test_eval_scores_a_raw_csv_with_unseen_categories(runs, tmp_path, cli):
    write_table(tmp_path / "more.csv", 60, seed=5, colors=COLORS + ["purple"])
    res = cli("eval", runs["table"], "--data", "more.csv", "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    text = json.dumps(report)
    assert '"accuracy"' in text
    rows = sum(1 for line in (tmp_path / "more.csv").read_text().splitlines()[1:]
               if ",purple," in line)
    assert rows > 0  # the unseen color is scored, not refused


def test_a_bare_table_model_file_needs_its_run(runs, cli, tmp_path):
    (tmp_path / "new.csv").write_text("x1,color,zone,x2\n0.1,red,10,5.0\n")
    res = cli("predict", runs["table"] / "model.keras", "--data", "new.csv")
    assert res.code == 2
    assert "named columns" in res.err and "run directory" in res.err


def test_the_vocabulary_comes_from_the_training_rows_only(tmp_path):
    from pathlib import Path

    from nntrain.config.schema import CsvData
    from nntrain.data.dataset import load_dataset

    write_table(tmp_path / "train.csv", 80)
    write_table(tmp_path / "test.csv", 40, seed=2, colors=["purple"])
    cfg = CsvData.model_validate({"source": "csv", "path": "train.csv", "target": "label",
                                  "test_path": "test.csv"})
    ds = load_dataset(cfg, 0, Path(tmp_path))
    color = next(c for c in ds.table.columns if c.name == "color")
    assert "purple" not in color.vocabulary and set(color.vocabulary) <= set(COLORS)
    # Every test row is purple: all of them land in the out-of-vocabulary bucket, index 0.
    assert (ds.x_test[:, ds.table.names.index("color")] == 0).all()


@pytest.mark.parametrize("columns, where, message", [
    ("{colour: categorical}", "data.columns.colour", "did you mean 'color'"),
    ("{x1: {type: numeric, encoding: one_hot}}", "data.columns.x1", "categorical columns"),
    ("{zone: {type: categorical, embedding_dim: 4}}", "data.columns.zone",
     "needs encoding: embedding"),
    ("{zone: ordinal}", "data.columns.zone", "numeric"),
])
def test_column_types_are_checked_where_they_are_written(cli, write, tmp_path, columns, where,
                                                         message):
    write_table(tmp_path / "table.csv", 40)
    config = textwrap.dedent(TABLE).replace("    zone: {type: categorical, encoding: embedding}\n",
                                            "").replace("  columns:\n", f"  columns: {columns}\n")
    write("run.yaml", config)
    res = cli("train", "run.yaml")
    assert res.code == 2
    line = res.err.strip().splitlines()[0]
    assert line.startswith("run.yaml:6:") and where in line and message in line, res.err
    assert not (tmp_path / "runs").exists()


def test_text_in_a_column_declared_numeric_names_its_line(cli, write, tmp_path):
    write_table(tmp_path / "table.csv", 40)
    write("run.yaml", textwrap.dedent(TABLE).replace(
        "zone: {type: categorical, encoding: embedding}", "color: numeric"))
    res = cli("train", "run.yaml")
    assert res.code == 2
    assert res.err.startswith("table.csv:2: column 'color': "), res.err
    assert "data.columns.color: categorical" in res.err
    assert not (tmp_path / "runs").exists()


def test_text_columns_are_found_without_any_config_and_an_empty_one_is_an_error(cli, write,
                                                                              tmp_path):
    # ... unless missing values are accepted. One training for both.
    path = write_table(tmp_path / "table.csv", 80)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "", 1)
    path.write_text("\n".join(lines) + "\n")
    config = textwrap.dedent(TABLE).replace(
        "  columns:\n    zone: {type: categorical, encoding: embedding}\n", "")
    write("run.yaml", config.replace("epochs: 6", "epochs: 1"))
    res = cli("train", "run.yaml")
    assert res.code == 2
    assert res.err.startswith("table.csv:4: column 'color' is empty"), res.err
    res = cli("train", "run.yaml", "-q", "--set", "data.missing=drop", "--set", "output.name=auto",
              "--set", "output.plots=false")
    assert res.code == 0, res.err
    manifest = json.loads((tmp_path / "runs" / "auto" / "manifest.json").read_text())
    assert sum(manifest["data"]["rows"].values()) == 79
    plan = json.loads((tmp_path / "runs" / "auto" / "columns.json").read_text())
    types = {c["name"]: c["type"] for c in plan["columns"]}
    # zone holds numbers, so without data.columns it is numeric.
    assert types == {"x1": "numeric", "color": "categorical", "zone": "numeric",
                     "x2": "numeric"}


def test_a_table_run_resumes_and_still_takes_raw_rows(resumed, plain_keras):
    run, before = resumed
    history = (run / "history.csv").read_text()
    assert history.startswith(before) and len(history.splitlines()) == 9
    p = plain_keras["resumed"]
    assert p[0] > 0.9 and p[1] < 0.1  # red is yes, green is no


def test_any_column_names_make_a_model_keras_can_save(tmp_path):
    import warnings

    import keras

    from nntrain.config.schema import ModelConfig
    from nntrain.data.tabular import ColumnPlan, TablePlan, build_model, raw_model

    plan = TablePlan([ColumnPlan("unit price", "numeric"),
                      ColumnPlan("città", "categorical", "string", ("Roma", "Torino")),
                      ColumnPlan("a/b", "categorical", "integer", (1, 5), "embedding", 2),
                      ColumnPlan("a_b", "categorical", "integer", (1, 5))])
    core = build_model(ModelConfig.model_validate({"layers": [{"type": "dense", "units": 1}]}),
                       plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's note that 'a/b' names its input a_b_2
        raw_model(plan, core).save(tmp_path / "m.keras")
        model = keras.models.load_model(tmp_path / "m.keras")
        if keras.backend.backend() != "tensorflow":  # text reaches the lookups on TF only
            assert len(model.inputs) == 4
            return
        out = model.predict({"unit price": np.array([1.0]), "a_b": np.array([1]),
                             "città": np.array(["Roma"], dtype=object), "a/b": np.array([5])},
                            verbose=0)
    assert out.shape == (1, 1) and np.isfinite(out).all()
