"""What a sweep costs per trial beyond the trial's own training.

    .venv/bin/python benchmarks/sweep_overhead.py [--trials 12]

One worker runs a sweep of tiny trials (200 rows of moons, 2 epochs, a 2-layer network) on the
default SQLite storage. For each trial it times the whole cycle as the worker sees it, from the
end of the trial before to the end of this one (asking Optuna for the trial, checking the
sampled config, training, telling the study, freeing the graph), and the time spent inside
``nntrain.training.train.train`` (data, model, fit, evaluation, writing the run directory: what
`nntrain train` does). The difference is the sweep's overhead. The first trial, which imports
TensorFlow, is left out. For scale, the same config trained by `nntrain train` in a fresh
process: what a sweep that started a process per trial would pay each time.

Prints markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, log, median  # noqa: E402

BASE = """
data: {source: generate, generator: moons, samples: 200, split: {validation: 0.2, test: 0.2}}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy, optimizer: adam, metrics: [accuracy], epochs: 2}
output: {plots: false}
"""
SWEEP = """
config: base.yaml
trials: {trials}
metric: validation.accuracy
space:
  training.optimizer.learning_rate: {{log_uniform: [0.0001, 0.1]}}
  model.layers[0].units: {{int: [2, 16]}}
"""


def measure(trials: int, tmp: Path) -> tuple[list[float], list[float]]:
    import importlib

    from nntrain.training.loop import StopRequest
    from nntrain.sweep.run import open_study, work
    from nntrain.sweep.spec import load_sweep

    (tmp / "base.yaml").write_text(BASE)
    (tmp / "s.yaml").write_text(SWEEP.format(trials=trials))
    inside: list[float] = []
    module = importlib.import_module("nntrain.training.train")
    real = module.train

    def timed(*args, **kwargs):  # run_trial imports train when it runs: it gets this one
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            inside.append(time.perf_counter() - t0)

    module.train = timed
    cycles: list[float] = []
    last = time.perf_counter()

    def on_trial(outcome) -> None:
        nonlocal last
        now = time.perf_counter()
        cycles.append(now - last)
        last = now
        log(f"trial {outcome.number}: {cycles[-1]:.3f} s, of which train() "
            f"{inside[-1]:.3f} s")

    sweep = load_sweep(tmp / "s.yaml")
    study = open_study(sweep, None)
    last = time.perf_counter()
    work(sweep, study, stop=StopRequest(), on_trial=on_trial)
    return cycles[1:], inside[1:]


def process_time(tmp: Path) -> float:
    # This checkout's nntrain, whichever one the environment has installed.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nntrain", "train", str(tmp / "base.yaml"), "-q",
                    "--set",
                    f"output.dir={tmp / 'runs'}"], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cycles, inside = measure(args.trials, Path(tmp))
        process = process_time(Path(tmp))
    overhead = [c - i for c, i in zip(cycles, inside)]
    load = os.getloadavg()[0]
    print(f"#### Sweep overhead per trial ({len(cycles)} trials after the first, median; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs)\n")
    print("| | seconds | share of the trial |")
    print("|---|---:|---:|")
    print(f"| whole trial, as the worker sees it | {median(cycles):.3f} | 100% |")
    print(f"| inside `train()` (what `nntrain train` does) | {median(inside):.3f} | "
          f"{median(inside) / median(cycles):.0%} |")
    print(f"| **the sweep's overhead** (ask, check, tell, free the graph) | "
          f"**{median(overhead):.3f}** (max {max(overhead):.3f}) | "
          f"{median(overhead) / median(cycles):.0%} |")
    print(f"| for scale: `nntrain train` of the same config in a fresh process | {process:.2f} "
          f"| {process / median(cycles):.1f}x the in-process trial |")


if __name__ == "__main__":
    main()
