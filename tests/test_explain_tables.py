"""`nntrain explain` on a table run: categorical columns (one-hot and embedding) beside a number.

The label is decided by one categorical column alone, so integrated gradients must put that
column first, and every row's attributions must add up to prediction - baseline_prediction.
"""

from __future__ import annotations

import csv
import io
import textwrap

import numpy as np
import pytest

# bought = color is red or black; price and store play no part. color is an embedding, store
# (integer codes) one-hot, price a normalized number.
TABLE = """
data:
  source: csv
  path: shop.csv
  target: bought
  normalize: standard
  split: {test: 0.25}
  columns:
    store: categorical
    color: {type: categorical, encoding: embedding, embedding_dim: 2}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.03}
  metrics: [accuracy]
  epochs: 12
  batch_size: 32
"""
COLUMNS = ["price", "color", "store"]


def write_shop(path, rows, seed=0, target=True):
    rs = np.random.RandomState(seed)
    colors = rs.choice(["red", "green", "blue", "black"], rows)
    lines = [",".join(COLUMNS + (["bought"] if target else []))]
    for color in colors:
        cells = [f"{rs.uniform(1, 100):.2f}", color, str(rs.choice([101, 102, 205]))]
        if target:
            cells.append("yes" if color in ("red", "black") else "no")
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from nntrain.cli.app import main

    root = tmp_path_factory.mktemp("explain-tables")
    write_shop(root / "shop.csv", 320)
    (root / "shop.yaml").write_text(textwrap.dedent(TABLE).lstrip())
    # No pictures (no test looks at one); 16 rows a batch: the 240 training and 80 test rows
    # are whole batches, so each step compiles for one batch shape only.
    code = main(["train", str(root / "shop.yaml"), "-q", "--set", f"output.dir={root / 'runs'}",
                 "--set", "output.name=shop", "--set", "output.plots=false",
                 "--set", "training.batch_size=16"])
    assert code == 0
    return root / "runs" / "shop"


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_the_deciding_categorical_column_leads_and_attributions_are_complete(cli, shop):
    res = cli("explain", shop)
    assert res.code == 0, res.err
    rows = rows_of(res.out)
    assert list(rows[0]) == ["row", *COLUMNS, "class", "prediction", "baseline_prediction"]
    assert len(rows) == 80  # the run's test rows
    a = np.array([[float(r[c]) for c in COLUMNS] for r in rows])
    gap = a.sum(axis=1) - np.array([float(r["prediction"]) - float(r["baseline_prediction"])
                                    for r in rows])
    assert np.abs(gap).max() <= 0.01, gap
    importance = dict(zip(COLUMNS, np.abs(a).mean(axis=0)))
    assert importance["color"] > 3 * max(importance["price"], importance["store"]), importance
    # stderr's table names the user's columns, color first, and the completeness verdict.
    table = res.err[res.err.index("feature"):]
    assert table.index("color") < table.index("price") and "store" in table
    assert "every row's attributions sum to prediction - baseline_prediction" in res.err


def test_a_file_with_unseen_values_is_explained_per_named_column(cli, shop, tmp_path):
    (tmp_path / "new.csv").write_text("price,store,color\n12.5,101,red\n80,999,purple\n")
    res = cli("explain", shop, "--data", tmp_path / "new.csv", "--format", "jsonl",
              "--class", "yes")
    assert res.code == 0, res.err
    lines = [__import__("json").loads(line) for line in res.out.splitlines()]
    assert [sorted(line) for line in lines] == [sorted(
        ["row", *COLUMNS, "class", "prediction", "baseline_prediction"])] * 2
    assert [line["class"] for line in lines] == ["yes", "yes"]
    for line in lines:  # purple and store 999 go to the out-of-vocabulary bucket: still complete
        total = sum(line[c] for c in COLUMNS)
        assert abs(total - (line["prediction"] - line["baseline_prediction"])) <= 0.01, line
    # red is a "yes" colour: it pushes the probability of "yes" up from the mean row's.
    assert lines[0]["color"] > 0.05, lines[0]


def test_permutation_importance_names_the_deciding_column(cli, shop):
    res = cli("explain", shop, "--method", "permutation", "--repeats", "3")
    assert res.code == 0, res.err
    found = rows_of(res.out)
    assert [r["feature"] for r in found][0] == "color"
    assert sorted(r["feature"] for r in found) == sorted(COLUMNS)


@pytest.mark.parametrize("kind", ["min", "zeros"])
def test_baselines_without_meaning_for_a_category_are_refused(cli, shop, kind):
    res = cli("explain", shop, "--baseline", kind)
    assert res.code == 2 and res.out == ""
    assert f"--baseline {kind}: a run with categorical columns is explained from the " \
           "training rows' mean only" in res.err
    assert len(res.err.strip().splitlines()) == 1, res.err
