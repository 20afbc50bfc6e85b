"""Epochs to a given R² with and without data.target_normalize: standard (issue 16).

    .venv/bin/python benchmarks/target_scaling.py [--seeds 3] [--epochs 300] [--tables hundreds]

Two regression tables: a generated one whose target is in the hundreds (442 rows, 10 inputs,
like scikit-learn's diabetes set: mean ~150, std ~75) and configs/sine.yaml's target, which is
already around 0. Each trains with the config's own settings (adam, normalized inputs) with the
target as is and standardized, and reports the first epoch whose validation R² reaches the
thresholds, and the best validation R². Counts epochs, not seconds: the load on the machine
does not change them. Prints markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, log, table  # noqa: E402

HUNDREDS = """
data:
  source: csv
  path: {path}
  target: y
  normalize: standard
  target_normalize: {scale}
  split: {{validation: 0.2, test: 0.2}}
model:
  layers:
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 1}}
training:
  loss: mse
  optimizer: {{name: adam, learning_rate: 0.001}}
  metrics: [r2_score]
  epochs: {epochs}
  seed: {seed}
output: {{plots: false}}
"""

SINE = """
data:
  source: generate
  generator: sine
  samples: 1000
  noise: 0.05
  target_normalize: {scale}
  split: {{validation: 0.1, test: 0.2}}
model:
  layers:
    - {{type: dense, units: 32, activation: tanh}}
    - {{type: dense, units: 32, activation: tanh}}
    - {{type: dense, units: 1}}
training:
  loss: mse
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [r2_score]
  epochs: {epochs}
  seed: {seed}
output: {{plots: false}}
"""


def hundreds_table(path: Path) -> None:
    rs = np.random.RandomState(0)
    x = rs.normal(size=(442, 10))
    w = rs.normal(size=10)
    y = 150 + 20 * x @ w + 15 * np.sin(2 * x[:, 0]) + rs.normal(scale=25, size=442)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow([*(f"x{i}" for i in range(10)), "y"])
        out.writerows([*row, target] for row, target in zip(x.tolist(), y.tolist()))


def val_r2(config: Path, runs: Path) -> list[float]:
    proc = subprocess.run([str(BIN / "nntrain"), "train", str(config), "--jsonl", "--quiet",
                           "--set", f"output.dir={runs}", "--force"],
                          capture_output=True, text=True, check=True)
    return [e["val_r2_score"] for e in map(json.loads, proc.stdout.splitlines())
            if e["event"] == "epoch"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--tables", nargs="+", default=["hundreds", "sine"],
                        choices=["hundreds", "sine"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        hundreds_table(tmp_path / "hundreds.csv")
        chosen = {"hundreds": ("target in the hundreds", HUNDREDS), "sine": ("sine", SINE)}
        for name, template in (chosen[t] for t in args.tables):
            for scale in ("none", "standard"):
                reached: dict[float, list[int | None]] = {t: [] for t in args.thresholds}
                best = []
                for seed in range(args.seeds):
                    config = tmp_path / f"{scale}.yaml"
                    config.write_text(textwrap.dedent(template).format(
                        path=tmp_path / "hundreds.csv", scale=scale, epochs=args.epochs,
                        seed=seed))
                    log(f"{name}, target_normalize {scale}, seed {seed}")
                    r2 = val_r2(config, tmp_path / "runs")
                    for t in args.thresholds:
                        reached[t].append(next((i + 1 for i, v in enumerate(r2) if v >= t),
                                               None))
                    best.append(max(r2))
                shown = [", ".join("never" if h is None else str(h) for h in reached[t])
                         for t in args.thresholds]
                rows.append([name, scale, *shown, f"{np.median(best):.3f}"])
    print(f"#### Epochs to a validation R² ({args.seeds} seed{'s' * (args.seeds > 1)}, at most "
          f"{args.epochs} epochs; one number per seed)\n")
    print(table(["table", "target_normalize", *(f"epochs to R² ≥ {t}" for t in args.thresholds),
                 "best val R² (median)"], rows))


if __name__ == "__main__":
    main()
