"""Training throughput: `nntrain train` against the best hand-written Keras program and a
hand-written PyTorch loop, on the same network, data and batch sizes (issue 9).

    .venv/bin/python benchmarks/train_throughput.py [--reps 5] [--batch-sizes 32,256,1024]
                                                    [--backend tensorflow|jax]

The network: 20 inputs -> Dense(256, relu) -> Dense(256, relu) -> Dense(1, sigmoid), Adam,
binary cross-entropy, no metrics; the data: nntrain's `random` generator, 100,000 x 20 float32
rows, seed 42, every row for training. Each variant reshuffles the rows every epoch, as a user
would. Variants:

    nntrain       nntrain.training.train.train() in-process on a config file (its defaults, so
                  steps_per_execution 32, a checkpoint every epoch); the time of an epoch is
                  the seconds its on_epoch callback reports
    keras_spe32   model.fit(x, y, epochs=E) on numpy arrays, compiled with
                  steps_per_execution=32: the fastest hand-written Keras program we know
    keras_plain   the same with Keras's default steps_per_execution=1: what most people write
    torch         a plain PyTorch loop: randperm, slices, zero_grad/backward/step

Every measurement runs in a fresh process, the variants alternate (a, b, c, d, a, b, ...), the
first epoch of each run (tracing, start-up) is left out, and the medians over the repetitions
are reported with paired ratios (the runs of one repetition were neighbours in time, so their
ratio cancels most of the machine's drift). The peak is the best float32 2048x2048 matrix
product of TensorFlow, NumPy, PyTorch and JAX on this machine; a variant's fraction of it is
samples/s x FLOPs per sample / peak. ``--backend`` picks the Keras backend of the nntrain and
Keras variants (issue 19 compares JAX with the PyTorch loop). Prints markdown on stdout,
progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (FEATURES, HIDDEN, SEED, TRAIN_FLOPS, load_average, log,  # noqa: E402
                     median, table, worker)

SCRIPT = Path(__file__).resolve()
VARIANTS = ("nntrain", "keras_spe32", "keras_plain", "torch")
KERAS_VARIANTS = ("keras_spe32", "keras_plain")


def training_data(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows nntrain's config below draws: x float32 (samples, 20), y float32 (samples, 1)."""
    from nntrain.data.synthetic import generate  # numpy only: the same bytes as nntrain's

    x, y = generate("random", samples, FEATURES, seed=SEED)
    return x, y.astype(np.float32).reshape(-1, 1)


# --- the variants, each run in a worker process ------------------------------------------

NNTRAIN_CONFIG = """\
data:
  source: generate
  generator: random
  samples: {samples}
  features: {features}
  split: {{test: 0.0, shuffle: false}}
model:
  layers:
    - {{type: dense, units: {hidden}, activation: relu}}
    - {{type: dense, units: {hidden}, activation: relu}}
    - {{type: dense, units: 1, activation: sigmoid}}
training:
  loss: binary_crossentropy
  optimizer: adam
  epochs: {epochs}
  batch_size: {batch}
  seed: {seed}
output:
  dir: {dir}
  plots: false
"""


def run_nntrain(batch: int, epochs: int, samples: int) -> dict:
    from nntrain.config import load_config
    from nntrain.training.train import train

    seconds: list[float] = []
    losses: list[float] = []

    def on_epoch(epoch: int, total: int, logs: dict[str, float], took: float) -> None:
        seconds.append(took)
        losses.append(logs["loss"])

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(NNTRAIN_CONFIG.format(samples=samples, features=FEATURES, hidden=HIDDEN,
                                              epochs=epochs, batch=batch, seed=SEED,
                                              dir=Path(tmp) / "runs"))
        train(load_config(path), argv=["benchmark"], on_epoch=on_epoch)
    return {"epoch_seconds": seconds, "loss": losses[-1]}


def run_keras(batch: int, epochs: int, samples: int, steps_per_execution: int) -> dict:
    import keras

    keras.utils.set_random_seed(SEED)
    x, y = training_data(samples)
    model = keras.Sequential([
        keras.Input(shape=(FEATURES,)),
        keras.layers.Dense(HIDDEN, activation="relu"),
        keras.layers.Dense(HIDDEN, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  steps_per_execution=steps_per_execution)
    ends: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ends.append(time.perf_counter())

    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0,
                        callbacks=[Timer()])
    # From the end of one epoch to the end of the next: everything the epoch costs.
    seconds = list(np.diff([start, *ends]))
    return {"epoch_seconds": seconds, "loss": float(history.history["loss"][-1])}


def run_torch(batch: int, epochs: int, samples: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(SEED)
    x, y = training_data(samples)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                          nn.ReLU(), nn.Linear(HIDDEN, 1), nn.Sigmoid())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's defaults
    loss_fn = nn.BCELoss()
    shuffle = torch.Generator().manual_seed(SEED)
    seconds: list[float] = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(samples, generator=shuffle)
        ex, ey = xs[order], ys[order]
        total = torch.zeros(())
        for i in range(0, samples, batch):
            xb, yb = ex[i:i + batch], ey[i:i + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(xb)  # the epoch's mean loss, as Keras reports it
        mean_loss = float(total) / samples
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "loss": mean_loss}


def matmul_peak(library: str, n: int = 2048, repeats: int = 10) -> dict:
    """Best GFLOP/s of an n x n float32 matrix product (2 n^3 FLOPs) with the library's
    default threads (all cores)."""
    a, b = (np.random.RandomState(i).rand(n, n).astype(np.float32) for i in (0, 1))
    if library == "tensorflow":
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)

        def product() -> None:
            tf.matmul(ta, tb).numpy()  # .numpy() waits for the result
    elif library == "jax":
        import jax

        ja, jb = jax.numpy.asarray(a), jax.numpy.asarray(b)

        def product() -> None:
            jax.numpy.matmul(ja, jb).block_until_ready()
    elif library == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        pa, pb = torch.from_numpy(a), torch.from_numpy(b)

        def product() -> None:
            torch.matmul(pa, pb)
    else:
        def product() -> None:
            np.matmul(a, b)
    best = float("inf")
    for i in range(repeats + 2):  # the first two warm up thread pools and caches
        t0 = time.perf_counter()
        product()
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / best / 1e9}


def run_worker(args: argparse.Namespace) -> dict:
    if args.worker == "nntrain":
        return run_nntrain(args.batch, args.epochs, args.samples)
    if args.worker == "keras_spe32":
        return run_keras(args.batch, args.epochs, args.samples, 32)
    if args.worker == "keras_plain":
        return run_keras(args.batch, args.epochs, args.samples, 1)
    if args.worker == "torch":
        return run_torch(args.batch, args.epochs, args.samples)
    if args.worker.startswith("peak-"):
        return matmul_peak(args.worker.removeprefix("peak-"))
    raise SystemExit(f"unknown worker {args.worker}")


# --- the driver --------------------------------------------------------------------------

def measure_peak() -> tuple[float, dict[str, float]]:
    by_library = {lib: worker(SCRIPT, f"peak-{lib}")["gflops"]
                  for lib in ("tensorflow", "numpy", "torch", "jax")}
    return max(by_library.values()), by_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every run")
    parser.add_argument("--batch-sizes", default="32,256,1024")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is left out")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"],
                        help="the Keras backend of the nntrain and Keras variants")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return

    batches = [int(b) for b in args.batch_sizes.split(",")]
    variants = args.variants.split(",")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out")
    args.load_before = load_average()
    log("measuring the float32 matmul peak")
    peak_before, libraries = measure_peak()
    # samples/s per (batch, variant), one entry per repetition
    sps: dict[int, dict[str, list[float]]] = {b: {v: [] for v in variants} for b in batches}
    losses: dict[int, dict[str, list[float]]] = {b: {v: [] for v in variants} for b in batches}
    for rep in range(args.reps):
        for batch in batches:
            for variant in variants:
                out = worker(SCRIPT, variant, "--batch", str(batch), "--epochs",
                             str(args.epochs), "--samples", str(args.samples),
                             backend=args.backend)
                steady = median(out["epoch_seconds"][1:])
                sps[batch][variant].append(args.samples / steady)
                losses[batch][variant].append(out["loss"])
                log(f"rep {rep + 1}/{args.reps} batch {batch:>5} {variant:<12} "
                    f"{args.samples / steady:>10,.0f} samples/s  epochs "
                    f"{', '.join(f'{s:.2f}' for s in out['epoch_seconds'])} s  "
                    f"loss {out['loss']:.4f}")
    peak_after, libraries_after = measure_peak()
    peak = max(peak_before, peak_after)
    libraries = {k: max(v, libraries_after[k]) for k, v in libraries.items()}
    print(report(sps, losses, batches, variants, peak, libraries, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"samples_per_second": sps, "loss": losses,
                                               "peak_gflops": libraries}, indent=1))


def report(sps: dict[int, dict[str, list[float]]], losses: dict[int, dict[str, list[float]]],
           batches: list[int], variants: list[str], peak: float,
           libraries: dict[str, float], args: argparse.Namespace) -> str:
    peak_note = ", ".join(f"{lib} {g:,.0f}" for lib, g in libraries.items())
    out = [f"### Training throughput, Keras on {args.backend} ({args.samples:,} samples, "
           f"{args.reps} repetitions, median of epochs 2-{args.epochs} per run; 1-minute load "
           f"average {args.load_before:.2f} before, {load_average():.2f} after)", "",
           f"float32 matmul peak (2048x2048, best of each library, GFLOP/s): **{peak:,.0f}** "
           f"({peak_note}); training costs {TRAIN_FLOPS:,} FLOPs per sample "
           "(3 x the forward pass).", ""]
    rows = []
    for batch in batches:
        for variant in variants:
            values = sps[batch][variant]
            m = median(values)
            rows.append([batch, variant, f"{m:,.0f}", f"{min(values):,.0f}-{max(values):,.0f}",
                         f"{m * TRAIN_FLOPS / 1e9:,.1f}", f"{m * TRAIN_FLOPS / 1e9 / peak:.1%}",
                         f"{max(values) * TRAIN_FLOPS / 1e9 / peak:.1%}",
                         f"{median(losses[batch][variant]):.4f}"])
    # The best run is what the variant can do when nothing else wants the cores: other work
    # only ever slows a run down.
    out.append(table(["batch", "variant", "samples/s (median)", "range", "GFLOP/s",
                      "of peak", "best run, of peak", "final loss"], rows))
    if "nntrain" in variants:
        out += ["", "Paired ratios (median over repetitions of the ratio within one repetition; "
                "above 1 means nntrain is faster):", ""]
        rows = []
        for batch in batches:
            keras = [v for v in KERAS_VARIANTS if v in variants]
            best = max(keras, key=lambda v: median(sps[batch][v])) if keras else None
            rows.append([batch, paired(sps[batch], best), best or "-",
                         paired(sps[batch], "torch" if "torch" in variants else None)])
        out.append(table(["batch", "nntrain / best Keras (range)", "best Keras",
                          "nntrain / PyTorch (range)"], rows))
    return "\n".join(out) + "\n"


def paired(sps: dict[str, list[float]], other: str | None) -> str:
    """Median (and range) of nntrain's samples/s over ``other``'s, repetition by repetition."""
    if other is None:
        return "-"
    ratios = [a / b for a, b in zip(sps["nntrain"], sps[other])]
    return f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


if __name__ == "__main__":
    main()
