"""Inference: what `nntrain predict` and `eval` run, against the other ways to run the model.

    .venv/bin/python benchmarks/inference.py [--reps 5] [--rows 100000]

Trains a run of the benchmark network (train_throughput.py's, one epoch on a few rows: the
weights do not change the speed), then, in a fresh process each:

    nntrain predict_all    nntrain.use.load.predict_all: the forward pass `predict` and `eval`
                           use (a tf.function, 4096 rows a call)
    model.predict          Keras's own, batch_size 4096, and with its default batch_size 32
    tf.function            the model wrapped by hand, 4096 rows a call and all rows in one call
    torch                  the same network in PyTorch, inference_mode, 4096 rows a call

and whole commands on a CSV file of the same rows: `nntrain predict` and `nntrain eval`, beside
a hand-written script that loads the model and the CSV and writes model.predict's outputs.
Medians of the repetitions. Prints markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BIN, FEATURES, FORWARD_FLOPS, HIDDEN, SEED, log, median,  # noqa: E402
                     table, wall_time, worker)

SCRIPT = Path(__file__).resolve()
NNTRAIN = str(BIN / "nntrain")
BATCH = 4096

# What a user would write by hand for `nntrain predict RUN --data FILE`.
HAND_WRITTEN = """\
import sys, numpy as np, keras
model = keras.saving.load_model(sys.argv[1])
x = np.loadtxt(sys.argv[2], delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
p = model.predict(x, batch_size=4096, verbose=0)
np.savetxt(sys.stdout, np.hstack([(p > 0.5).astype(np.float32), 1 - p, p]), delimiter=",",
           fmt="%.6g")
"""


def inputs(rows: int) -> np.ndarray:
    return np.random.RandomState(SEED).rand(rows, FEATURES).astype(np.float32)


def timed(ways: dict, reps: int) -> dict[str, float]:
    """Median seconds of each way's call, the ways alternating, after one untimed call each
    (tracing, thread pools)."""
    for fn in ways.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(reps):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return {name: median(s) for name, s in seconds.items()}


def run_tensorflow(run_dir: str, rows: int, reps: int) -> dict:
    import tensorflow as tf

    from nntrain.use.load import forward_pass, load_trained, predict_all

    trained = load_trained(run_dir)
    model = trained.model
    x = inputs(rows)
    forward = forward_pass(model)  # once per command, as predict and eval do
    by_hand = tf.function(lambda t: model(t, training=False))

    def chunks() -> np.ndarray:
        return np.concatenate([by_hand(tf.constant(x[i:i + BATCH])).numpy()
                               for i in range(0, rows, BATCH)])

    ways = {
        "nntrain predict_all (tf.function, 4096 rows a call)":
            lambda: predict_all(trained, x, forward),
        "model.predict(x, batch_size=4096)":
            lambda: model.predict(x, batch_size=BATCH, verbose=0),
        "model.predict(x) (batch_size 32)": lambda: model.predict(x, verbose=0),
        "tf.function by hand, 4096 rows a call": chunks,
        "tf.function by hand, all rows in one call": lambda: by_hand(tf.constant(x)).numpy(),
    }
    return timed(ways, reps)


def run_torch(rows: int, reps: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                          nn.ReLU(), nn.Linear(HIDDEN, 1), nn.Sigmoid()).eval()
    x = torch.from_numpy(inputs(rows))

    def chunks() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([model(x[i:i + BATCH]).numpy() for i in range(0, rows, BATCH)])

    return timed({"torch, inference_mode, 4096 rows a call": chunks}, reps)


def make_run(tmp: Path, rows: int) -> tuple[Path, Path]:
    """A trained run of the benchmark network, and a CSV of ``rows`` rows for it."""
    from train_throughput import NNTRAIN_CONFIG

    config = tmp / "bench.yaml"
    config.write_text(NNTRAIN_CONFIG.format(samples=2000, features=FEATURES, hidden=HIDDEN,
                                            epochs=1, batch=256, seed=SEED, dir=tmp / "runs"))
    subprocess.run([NNTRAIN, "train", str(config), "--quiet", "--set", "output.name=bench",
                    "--set", "data.split.test=0.1"], check=True, stdout=subprocess.DEVNULL)
    data = tmp / "rows.csv"
    subprocess.run([NNTRAIN, "generate-data", "random", "-n", str(rows), "-f", str(FEATURES),
                    "-o", str(data)], check=True)
    return tmp / "runs" / "bench", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "tensorflow":
        print(json.dumps(run_tensorflow(args.run, args.rows, args.reps)))
        return
    if args.worker == "torch":
        print(json.dumps(run_torch(args.rows, args.reps)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        log("training a run to predict with")
        run_dir, data = make_run(Path(tmp), args.rows)
        seconds = worker(SCRIPT, "tensorflow", "--run", str(run_dir), "--rows",
                         str(args.rows), "--reps", str(args.reps))
        try:
            seconds.update(worker(SCRIPT, "torch", "--rows", str(args.rows), "--reps",
                                  str(args.reps)))
        except RuntimeError as exc:  # PyTorch not installed: the rest still stands
            log(f"skipping PyTorch: {str(exc).splitlines()[-1]}")
        script = Path(tmp) / "hand_written_predict.py"
        script.write_text(HAND_WRITTEN)
        commands = {
            "nntrain predict RUN --data rows.csv": [NNTRAIN, "predict", str(run_dir), "--data",
                                                     str(data)],
            "nntrain eval RUN --data rows.csv": [NNTRAIN, "eval", str(run_dir), "--data",
                                                  str(data)],
            "hand-written: load_model, np.loadtxt, model.predict, np.savetxt":
                [sys.executable, str(script), str(run_dir / "model.keras"), str(data)],
        }
        whole: dict[str, list[float]] = {name: [] for name in commands}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        for rep in range(args.reps):
            for name, command in commands.items():
                whole[name].append(wall_time(command, env=env))
                log(f"rep {rep + 1}/{args.reps} {name}: {whole[name][-1]:.2f} s")
    print(report(seconds, whole, args))


def report(seconds: dict[str, float], whole: dict[str, list[float]],
           args: argparse.Namespace) -> str:
    reference = seconds["nntrain predict_all (tf.function, 4096 rows a call)"]
    rows = [[name, f"{args.rows / s:,.0f}", f"{s * 1000:,.0f}", f"{s / reference:.2f}",
             f"{args.rows * FORWARD_FLOPS / s / 1e9:,.1f}"] for name, s in seconds.items()]
    lines = [f"### Inference ({args.rows:,} rows, median of {args.reps})", "",
             table(["way", "rows/s", "ms", "time / nntrain's", "GFLOP/s"], rows), "",
             f"Whole commands on a CSV file of {args.rows:,} rows (start-up, reading, writing "
             "included):", "",
             table(["command", "seconds", "range"],
                   [[name, f"{median(s):.2f}", f"{min(s):.2f}-{max(s):.2f}"]
                    for name, s in whole.items()])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
