"""Tiny trained runs for the tests of eval, predict and export, trained once per session."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from conftest import TINY

# Three classes with text labels read from a CSV file: labels.json maps them.
TEXT_LABELS = """
data: {source: csv, path: animals.csv, target: kind, split: {validation: 0.1, test: 0.25}}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 3, activation: softmax}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {name: adam, learning_rate: 0.05}
  metrics: [accuracy]
  epochs: 3
output: {name: animals}
"""

REGRESSION = """
data: {source: generate, generator: sine, samples: 200, split: {test: 0.2}}
model:
  layers:
    - {type: dense, units: 8, activation: tanh}
    - {type: dense, units: 1}
training:
  loss: mse
  optimizer: {name: adam, learning_rate: 0.01}
  metrics: [mae]
  epochs: 2
output: {name: sine}
"""

# Missing cells, filled in with the training rows' means (recorded in preprocessing.json).
GAPS = """
data: {source: csv, path: gaps.csv, target: y, missing: mean}
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy, metrics: [accuracy], epochs: 2}
"""

ANIMALS = ["cat", "dog", "emu"]


def write_animals(path: Path, rows: int, seed: int = 0, labels: list[str] = ANIMALS) -> Path:
    """A CSV with columns a, b, kind: three separable clusters labelled with text."""
    rs = np.random.RandomState(seed)
    k = rs.randint(0, len(labels), rows)
    x = rs.randn(rows, 2) * 0.3 + np.stack([k, -k], axis=1)
    lines = ["a,b,kind"] + [f"{a!r},{b!r},{labels[c]}" for (a, b), c in zip(x.tolist(), k)]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_runs(root: Path, *which: str) -> dict[str, Path]:
    """Train the named runs ('binary', 'animals', 'sine', 'gaps') under root/runs; name -> run
    dir."""
    from nntrain.cli.app import main

    configs = {"binary": TINY, "animals": TEXT_LABELS, "sine": REGRESSION, "gaps": GAPS}
    if not (root / "animals.csv").exists():
        write_animals(root / "animals.csv", 240)
        rs = np.random.RandomState(1)
        x = rs.rand(200, 2)
        cells = [[f"{v!r}" if rs.rand() > 0.1 else "" for v in row] for row in x.tolist()]
        (root / "gaps.csv").write_text("a,b,y\n" + "".join(
            f"{a},{b},{int(u + v > 1)}\n" for (a, b), (u, v) in zip(cells, x.tolist())))
    out = {}
    for name in which:
        config = root / f"{name}.yaml"
        config.write_text(textwrap.dedent(configs[name]).lstrip())
        # No pictures: no test looks at these runs' (test_plots and test_train do at their own).
        code = main(["train", str(config), "-q", "--set", f"output.dir={root / 'runs'}",
                     "--set", f"output.name={name}", "--set", "output.plots=false"])
        assert code == 0, f"training {name} failed"
        out[name] = root / "runs" / name
    return out


_trained: dict[str, Path] = {}


def shared_runs(tmp_path_factory, *which: str) -> dict[str, Path]:
    """The named runs, trained the first time a test module asks and shared by the others.
    Tests must leave them as they are (writing under RUN/export/ is fine); copy one to change
    it."""
    root = tmp_path_factory.getbasetemp() / "shared-runs"
    root.mkdir(exist_ok=True)
    missing = [name for name in which if name not in _trained]
    if missing:
        _trained.update(train_runs(root, *missing))
    return {name: _trained[name] for name in which}
