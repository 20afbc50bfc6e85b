"""Shared helpers: run the real CLI in-process and write tiny configs to tmp_path."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests that import keras themselves get nntrain's default backend (KERAS_BACKEND=tensorflow
# runs the suite on the other one, as .ci/run does for the training, resume and export tests).
os.environ.setdefault("KERAS_BACKEND", "jax")

# One JAX compilation cache for the whole session, in a directory of its own (never the
# user's): the pytest-xdist workers and the CLI processes the tests start inherit it from the
# first process that imports this file, so a model compiled by one test is loaded by the next.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="nntrain-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Bounded as nntrain bounds it, in every process of the session, so that every process takes
# JAX's file lock and stamps its entries: a test that compiles with JAX before nntrain sets the
# cache up would otherwise write unstamped entries, which the bounded processes' eviction trips
# over (JAX's "Error writing persistent compilation cache entry" warning).
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(256 * 2**20))

# XLA compiles each model and batch shape at its lowest optimization level, without its newer
# CPU fusion emitters. The suite compiles about a thousand tiny models and runs each for a few
# steps, so compiling was its largest single cost: these flags cut the suite's CPU time by
# 18% (docs/benchmarks.md, "The test suite"). Only the last bits of the numbers change, the
# same way in every process of the session, so every comparison in the suite (resumed against
# straight, nntrain against hand-written Keras, eval against metrics.json) still holds bit
# for bit. test_backend's fresh JAX process trains and resumes at XLA's defaults, as users
# do; set XLA_FLAGS yourself (even to nothing) to run the whole suite so.
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=0 "
                               "--xla_cpu_use_fusion_emitters=false")

ROOT = Path(__file__).resolve().parent.parent

# Runs in this process draw their pictures here rather than in a helper process (nntrain.plots
# .Painter does so when matplotlib is loaded): one import for the whole suite.
import matplotlib.figure  # noqa: E402,F401


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `nntrain ARGS...` in-process with tmp_path as the working directory."""
    from nntrain.cli.app import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def write(tmp_path):
    """write("run.yaml", text) -> path; the text is dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


# A small, fast, learnable config used by many tests.
TINY = """
data:
  source: generate
  generator: moons
  samples: 200
  split: {validation: 0.1, test: 0.2}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training:
  loss: binary_crossentropy
  optimizer: {name: adam, learning_rate: 0.01}
  metrics: [accuracy]
  epochs: 2
  batch_size: 32
output:
  name: tiny
"""


# `--set output.plots=false`, for the runs of tests that look at no picture: drawing them is a
# good part of a tiny run's time.
NO_PLOTS = ("--set", "output.plots=false")


@pytest.fixture
def tiny(write):
    return write("tiny.yaml", TINY)


# Started first when the suite runs on several pytest-xdist workers (python3 tasks.py test):
# the longest tests, so that short ones fill in the end instead of one worker finishing a long
# test alone. Node id prefixes, longest first (from `pytest --durations=30`). A long test's
# whole file moves with it, its long tests first: the tests of a file share module fixtures
# (trained runs, fresh processes), which every worker that runs one of them builds again, and
# pytest-xdist hands a worker neighbouring tests. The rest keep their order.
LONG_FIRST = (
    "tests/test_sweep.py::test_a_sweep_killed",
    "tests/test_sweep.py::test_two_workers",
    "tests/test_distribute.py::test_a_lost_worker",
    "tests/test_sweep.py::test_sweep_with_pruning",
    "tests/test_resume.py::test_sig",
    "tests/test_tables.py::test_five_folds",
    "tests/test_tables.py::test_scaled_target",
    "tests/test_train.py::test_tutorial_matches",
    "tests/test_tabular.py::test_a_table_run_resumes",
    "tests/test_backend.py::test_a_jax_run",
)


def pytest_collection_modifyitems(items):
    def rank(nodeid: str) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)),
                    len(LONG_FIRST))

    files: dict[str, int] = {}
    for item in items:
        file = item.nodeid.split("::")[0]
        files[file] = min(files.get(file, len(LONG_FIRST)), rank(item.nodeid))
    # stable: the same order as before within a rank
    items.sort(key=lambda item: (files[item.nodeid.split("::")[0]], rank(item.nodeid)))
