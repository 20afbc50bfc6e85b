"""Generators, splits and the CSV reader."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nntrain.config.schema import Split
from nntrain.data.csvfile import parse_csv, read_csv, write_csv
from nntrain.data.dataset import split_rows
from nntrain.data.synthetic import GENERATORS, generate
from nntrain.errors import DataError


def test_random_is_the_tutorials_numpy_calls():
    np.random.seed(7)
    x_ref = np.random.rand(100, 2)
    y_ref = np.random.randint(0, 2, 100)
    x, y = generate("random", 100, 2, 2, 0.0, seed=7)
    np.testing.assert_array_equal(x, x_ref.astype(np.float32))
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_every_generator_is_deterministic_and_well_formed(name):
    gen = GENERATORS[name]
    x1, y1 = generate(name, 50, None, 3, 0.1, seed=1)
    x2, y2 = generate(name, 50, None, 3, 0.1, seed=1)
    x3, _ = generate(name, 50, None, 3, 0.1, seed=2)
    assert x1.shape[0] == y1.shape[0] == 50 and x1.dtype == np.float32
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert x1.tobytes() != x3.tobytes()
    assert np.isfinite(x1).all()
    if gen.task == "classification":
        assert y1.dtype == np.int64 and y1.min() >= 0
    else:
        assert y1.dtype == np.float32


def test_moons_are_balanced_and_learnable_shape():
    x, y = generate("moons", 101, None, 2, 0.0, seed=0)
    assert x.shape == (101, 2)
    assert abs(int(y.sum()) - 50) <= 1


def test_unshuffled_split_keeps_order():
    train, val, test = split_rows(100, Split(test=0.2, shuffle=False), seed=0)
    assert train == list(range(80)) and val == [] and test == list(range(80, 100))


def test_stratified_split_keeps_class_proportions():
    y = np.array([0] * 90 + [1] * 10)
    train, val, test = split_rows(100, Split(test=0.2, validation=0.1), 3, stratify_by=y)
    assert sorted(train + val + test) == list(range(100))
    assert y[test].sum() == 2 and y[val].sum() == 1


def test_csv_roundtrip_and_text_labels():
    buf = io.StringIO()
    write_csv(np.array([[1.5, 2.0]], np.float32), np.array([1]), buf)
    assert buf.getvalue() == "x0,x1,y\n1.5,2.0,1\n"
    table = parse_csv(io.StringIO('a,b,kind\r\n1,"2",cat\r\n3,4,dog\r\n'), "kind", None, "f.csv")
    assert table.labels == ["cat", "dog"]
    np.testing.assert_array_equal(table.y, [0, 1])
    np.testing.assert_array_equal(table.x, [[1, 2], [3, 4]])


@pytest.mark.parametrize("text, message, line", [
    ("", "the file is empty", None),
    ("a,b,y\n", "no data rows after the header", None),
    ("a,b,y\n1,2,0\n3,abc,1\n", "column 'b': 'abc' is not a number", 3),
    ("a,b,y\n1,2,0\n3,4\n", "expected 3 fields as in the header, found 2", 3),
    ("a,b,y\n1,,0\n", "column 'b': is empty", 2),
    ("a,b,y\n1,nan,0\n", "column 'b': nan is not a finite number", 2),
    ("a,b,label\n1,2,0\n", "no target column 'y'; the columns are: a, b, label", 1),
])
def test_bad_csv_gives_the_line(text, message, line):
    with pytest.raises(DataError, match=message) as exc:
        parse_csv(io.StringIO(text), "y", None, "data.csv")
    assert exc.value.problems[0].file == "data.csv"
    assert exc.value.problems[0].line == line


def test_missing_csv_file(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        read_csv(tmp_path / "none.csv", "y")
