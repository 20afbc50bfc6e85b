"""Inputs that must be refused with one located line and exit 2, never an internal error, a
hang or a run directory (issue #18, items 8-11)."""

from __future__ import annotations

import os

import pytest

from conftest import TINY


@pytest.mark.parametrize("override, where, message", [
    ("data.classes=1", "data.classes", "expected at least 2, got 1"),
    ("training.epochs=1000000000000", "training.epochs", "expected at most 1000000"),
    ("training.optimizer.learning_rate=1e999", "training.optimizer.learning_rate",
     r"expected a positive number, got inf \(training would diverge at once\)"),
    ("training.optimizer.learning_rate=.nan", "training.optimizer.learning_rate",
     "expected a positive number, got nan"),
    ("training.seed=4294967296", "training.seed", "expected less than 4294967296"),
    ("training.seed=-1", "training.seed", "not negative"),
    ('output.name="a\\nb"', "output.name", "no control characters"),
    ('output.name="a\\0b"', "output.name", "no control characters"),
    ("output.name=" + "n" * 300, "output.name", "at most 200 bytes"),
])
def test_absurd_values_are_refused_before_anything_is_written(cli, tiny, tmp_path, override,
                                                              where, message):
    import re

    res = cli("train", tiny, "--set", override)
    assert res.code == 2, res.err
    [line] = res.err.splitlines()
    assert f": {where}: " in line and re.search(message, line), line
    assert len(line) < 400, "a huge value is not echoed whole"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, where, message", [
    ("data:\n  <<: 5\n", "run.yaml:2:7: data", "invalid merge key"),
    ("? !!python/name:os.system\n: 1\n", "run.yaml:1:3",
     "tag 'tag:yaml.org,2002:python/name:os.system' is not allowed"),
    ("data: {source: generate}\n# caf\xe9\n", "run.yaml:2:6", r"not UTF-8 text \(byte 0xe9\)"),
])
def test_hostile_yaml_is_a_located_error_not_an_internal_one(cli, tmp_path, text, where,
                                                            message):
    import re

    (tmp_path / "run.yaml").write_bytes(text.encode("latin-1"))
    res = cli("validate", "run.yaml")
    assert res.code == 2 and "internal error" not in res.err
    [line] = res.err.splitlines()
    assert line.startswith(where + ": ") and re.search(message, line), line


@pytest.mark.parametrize("kind", ["config", "data", "model"])
def test_fifos_and_devices_are_refused_at_once(cli, write, tmp_path, kind):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    csv_config = write("csv.yaml", TINY.replace(
        "source: generate\n  generator: moons\n  samples: 200", "source: csv\n  path: d.csv\n"
        "  target: y"))
    args = {"config": ("validate", fifo), "data": ("validate", csv_config, "--data", fifo),
            "model": ("eval", fifo)}[kind]
    res = cli(*args)  # would block for ever if the FIFO were opened
    assert res.code == 2
    assert "is a named pipe (FIFO), not a regular file" in res.err
    if kind != "data":
        res = cli(*args[:-1], "/dev/zero")
        assert res.code == 2 and "/dev/zero" in res.err and "regular file" in res.err


def test_a_missing_data_file_names_the_config_line_and_the_full_path(cli, write, tmp_path):
    config = write("sub/csv.yaml", TINY.replace(
        "source: generate\n  generator: moons\n  samples: 200",
        "source: csv\n  path: ../nowhere.csv\n  target: y"))
    res = cli("validate", config)
    assert res.code == 2
    assert res.err.strip() == (f"{config}:3:9: data.path: no such data file: "
                               f"{tmp_path / 'nowhere.csv'}")


def test_duplicate_csv_columns_are_refused(cli, write, tmp_path):
    (tmp_path / "d.csv").write_text("x0,x0,y\n1,2,0\n3,4,1\n5,6,0\n")
    config = write("csv.yaml", TINY.replace(
        "source: generate\n  generator: moons\n  samples: 200",
        "source: csv\n  path: d.csv\n  target: y"))
    res = cli("train", config)
    assert res.code == 2
    assert res.err.strip() == ("d.csv:1: the header names a column more than once: 'x0'; "
                               "column names must be unique")
    assert not (tmp_path / "runs").exists()


def test_run_name_problems_come_before_the_model_table(cli, tiny, tmp_path):
    (tmp_path / "runs").write_text("a file where the runs directory goes")
    res = cli("train", tiny)
    assert res.code == 2
    assert res.err.strip() == "nntrain: runs: cannot create the runs directory: File exists"


@pytest.mark.parametrize("args, line", [
    (("trian", "x.yaml"), "nntrain: no such command 'trian' (did you mean 'train'?) "
                          "(see 'nntrain --help')"),
    (("train", "--forse", "x.yaml"), "nntrain train: no such option: --forse (did you mean "
                                     "'--force'?) (see 'nntrain train --help')"),
    (("eval",), "nntrain eval: missing argument 'RUN' (see 'nntrain eval --help')"),
])
def test_unknown_commands_and_options_are_one_line(cli, args, line):
    res = cli(*args)
    assert res.code == 2 and res.out == ""
    assert res.err.strip() == line


@pytest.mark.parametrize("override, where", [
    ("data.samples=1000000000000", "data.samples: 1,000,000,000,000 rows of 2 features would "
                                   "take about"),
    ("model.layers[0].units=100000000000", "model.layers[0].units: the model up to this layer "
                                           "would take about"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating(cli, tiny, tmp_path,
                                                                      override, where):
    res = cli("train", tiny, "--set", override)
    assert res.code == 2
    [line] = res.err.splitlines()
    assert where in line and "GiB of memory; this machine has" in line
    assert not (tmp_path / "runs").exists()


def test_generate_data_refuses_rows_that_cannot_fit(cli):
    res = cli("generate-data", "moons", "-n", "1000000000000")
    assert res.code == 2 and res.out == ""
    assert res.err.startswith("nntrain: --samples 1,000,000,000,000: would take about")


def test_inputs_of_the_wrong_rank_for_the_model_are_a_config_error(cli, write, tmp_path):
    import numpy as np

    rng = np.random.RandomState(0)
    np.savez(tmp_path / "cube.npz", x=rng.rand(60, 2, 3).astype("float32"),
             y=rng.randint(0, 2, 60))
    config = write("npz.yaml", TINY.replace(
        "source: generate\n  generator: moons\n  samples: 200",
        "source: npz\n  path: cube.npz"))
    res = cli("train", config)
    assert res.code == 2 and "internal error" not in res.err
    [line] = res.err.splitlines()
    assert line.startswith(f"{config}:7:5: model.layers: the data has inputs of shape [2, 3] per "
                           "row (cube.npz)")
    assert "add {type: flatten} first" in line


def test_a_bad_tf_config_index_is_bad_usage_like_a_bad_worker_index(monkeypatch):
    from nntrain.config.schema import Distribution
    from nntrain.errors import UsageError
    from nntrain.training.distribute import cluster_of

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, '
                                    '"task": {"type": "worker", "index": 2}}')
    with pytest.raises(UsageError, match=r"TF_CONFIG: task index 2 is out of range for the 2 "
                                         r"workers \(0 to 1\)") as exc:
        cluster_of(Distribution(strategy="multi_worker"))
    assert exc.value.exit_code == 2
    # Said "for the 1 workers (0 to 0)".
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"index": 3}}')
    with pytest.raises(UsageError, match=r"task index 3 is out of range for its one worker "
                                         r"\(0\)$"):
        cluster_of(Distribution(strategy="multi_worker"))


def test_generated_csv_is_written_in_pieces_with_the_same_bytes():
    from nntrain.data.formats import encode, encode_chunks
    from nntrain.data.synthetic import generate

    x, y = generate("moons", 25, seed=1)
    pieces = list(encode_chunks(x, y, "csv", rows=10))
    assert len(pieces) == 3 and pieces[0].startswith(b"x0,x1,y\n")
    assert not pieces[1].startswith(b"x0")
    assert b"".join(pieces) == encode(x, y, "csv")
    assert sum(p.count(b"\n") for p in pieces) == 26
