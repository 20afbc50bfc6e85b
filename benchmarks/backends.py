"""TensorFlow against JAX as nntrain's Keras backend, paired in one run (issue 19).

    .venv/bin/python benchmarks/backends.py [--reps 3] [--epochs 30] [--backends tensorflow,jax]
                                            [--jax-cache cold|warm|off]

Every measurement is a fresh process with KERAS_BACKEND set, and the variants alternate
(tf nntrain, tf keras, tf processes, jax nntrain, ...); ratios are taken within one repetition.
Both wall and CPU seconds (user + system, every thread) are reported: on a shared machine wall
time also measures the neighbours, CPU time what the command costs. What is measured:

- a quickstart-sized epoch (configs/quickstart.yaml: 700 training rows, batch 32, 100
  validation rows, no early stopping), from one epoch's end to the next's, median of epochs
  2..N of a run, through ``nntrain.train.train`` and through a hand-written ``model.fit`` of
  the same network; nntrain's time minus Keras's is the work nntrain adds per epoch (its
  shuffle, checkpoint, history and progress callback; both validate);
- whole processes: importing keras, ``nntrain train configs/tutorial.yaml`` (pictures on, as
  shipped, and off) against ``tests/reference_tutorial.py`` (the same job by hand), and the
  quickstart as shipped;
- whether the quickstart's runs (seed 42) gave identical metrics on each backend, and how far
  apart the two backends' metrics are;
- the 1-minute load average before and after, printed with the tables.

On JAX, ``--jax-cache`` sets the state of JAX's persistent compilation cache, which nntrain
keeps on by default (the hand-written script gets the same): ``cold`` (the default) gives every
process an empty one, as a first run has; ``warm`` fills one with an unmeasured run of each
whole process first, as every later run of the same config finds it; ``off`` turns it off. It
changes what the whole processes cost (compiling), not the epochs from the second on.

Prints markdown on stdout, progress on stderr. Timings are printed, never asserted.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (JAX_CACHE_MODES, ROOT, jax_cache_env, load_average, log,  # noqa: E402
                     median, process_times, table)

BACKENDS = ("tensorflow", "jax")
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


# --- workers: one measurement each, in a fresh process ------------------------------------

def epoch_nntrain(epochs: int) -> list[float]:
    """CPU seconds per epoch of nntrain's own loop on the quickstart, end to end of epoch."""
    from nntrain.config import load_config
    from nntrain.training.train import train

    marks: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_config(QUICKSTART, [f"training.epochs={epochs}",
                                          "training.early_stopping=null", "output.plots=false",
                                          f"output.dir={json.dumps(tmp)}"])
        train(loaded, argv=["bench"],
              on_epoch=lambda e, t, logs, s: marks.append(clocks()))
    return between(marks)


def epoch_keras(epochs: int) -> list[float]:
    """CPU seconds per epoch of a hand-written model.fit of the same network and rows."""
    import keras
    import numpy as np

    from nntrain.config import load_config
    from nntrain.data.dataset import load_dataset

    keras.utils.set_random_seed(42)
    cfg = load_config(QUICKSTART).config
    ds = load_dataset(cfg.data, 42, QUICKSTART.parent, stratify_default=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy"], steps_per_execution=32)
    marks: list[tuple[float, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(clocks())

    y = ds.y_train.astype(np.float32).reshape(-1, 1)
    yv = ds.y_val.astype(np.float32).reshape(-1, 1)
    model.fit(ds.x_train, y, validation_data=(ds.x_val, yv), batch_size=32, epochs=epochs,
              shuffle=True, verbose=0, callbacks=[Clock()])
    return between(marks)


def clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def between(marks: list[tuple[float, float]]) -> dict[str, list[float]]:
    """CPU and wall seconds from each epoch's end to the next's."""
    return {"epochs": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
            "wall": [b[1] - a[1] for a, b in zip(marks, marks[1:])]}


def worker_main(kind: str, epochs: int) -> None:
    print(json.dumps(epoch_nntrain(epochs) if kind == "nntrain" else epoch_keras(epochs)))


def run_worker(backend: str, kind: str, epochs: int) -> dict[str, list[float]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend,
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--epochs", str(epochs)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the report ---------------------------------------------------------------------------

def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.1f} ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def ratio(values: list[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--worker", choices=["nntrain", "keras"])
    parser.add_argument("--jax-cache", default="cold", choices=JAX_CACHE_MODES)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.epochs)
        return
    backends = args.backends.split(",")
    load_before = load_average()
    # (backend, kind) -> per run: the median of its epochs 2..N, CPU and wall
    epoch: dict[tuple[str, str, str], list[float]] = {}
    procs: dict[tuple[str, str, str], list[float]] = {}
    metrics: dict[str, list[dict]] = {b: [] for b in backends}
    with tempfile.TemporaryDirectory() as tmp:
        def env_of(b: str) -> dict[str, str]:
            env = {**os.environ, "KERAS_BACKEND": b, "TF_CPP_MIN_LOG_LEVEL": "2",
                   "PYTHONPATH": str(ROOT)}
            return {**env, **jax_cache_env(args.jax_cache, Path(tmp))} if b == "jax" else env

        if args.jax_cache == "warm" and "jax" in backends:
            for command in commands(Path(tmp), "warm-up").values():
                process_times(command, env=env_of("jax"))
        for rep in range(args.reps):
            for b in backends:
                for k in ("nntrain", "keras"):
                    # from the end of epoch 1 (which compiles): the steady state
                    out = run_worker(b, k, args.epochs)
                    for clock in ("epochs", "wall"):
                        epoch.setdefault((b, k, clock), []).append(median(out[clock]))
                    log(f"rep {rep + 1}/{args.reps} {b} {k}: "
                        f"{epoch[b, k, 'epochs'][-1] * 1000:.1f} CPU ms/epoch, "
                        f"{epoch[b, k, 'wall'][-1] * 1000:.1f} wall ms/epoch")
                name = f"quickstart-{b}-{rep}"
                for label, command in commands(Path(tmp), name).items():
                    wall, cpu = process_times(command, env=env_of(b))
                    procs.setdefault((b, label, "wall"), []).append(wall)
                    procs.setdefault((b, label, "cpu"), []).append(cpu)
                    log(f"rep {rep + 1}/{args.reps} {b} {label}: {wall:.2f} s wall, "
                        f"{cpu:.2f} CPU s")
                metrics[b].append(json.loads((Path(tmp) / name / "metrics.json").read_text()))
    # The raw numbers first (on stderr), so that a failing report loses nothing.
    log(json.dumps({"epoch": {"/".join(k): v for k, v in epoch.items()},
                    "processes": {"/".join(k): v for k, v in procs.items()},
                    "metrics": metrics}))
    print(report(epoch, procs, metrics, backends, args, load_before, load_average()))


def commands(runs: Path, quickstart_name: str) -> dict[str, list[str]]:
    """The whole processes measured, by the name the report gives them."""
    # python -m nntrain with PYTHONPATH: this checkout's nntrain, the one measured
    train = [sys.executable, "-m", "nntrain", "train", "--quiet", "--set", f"output.dir={runs}"]
    return {
        "import keras": [sys.executable, "-c", "import keras"],
        "python tests/reference_tutorial.py": [sys.executable, "tests/reference_tutorial.py"],
        "nntrain train configs/tutorial.yaml": [*train, "configs/tutorial.yaml"],
        "nntrain train configs/tutorial.yaml, no plots": [*train, "configs/tutorial.yaml",
                                                          "--set", "output.plots=false"],
        "nntrain train configs/quickstart.yaml": [*train, "configs/quickstart.yaml", "--set",
                                                  f"output.name={quickstart_name}"],
    }


def same_seed(metrics: dict[str, list[dict]], backends: list[str]) -> list[str]:
    """Whether the quickstart's runs (same seed) gave identical metrics on each backend, and
    how far apart the backends' first runs are."""
    def flat(m: dict) -> dict[str, float]:
        # metrics.json also holds notes (text): the numbers are what is compared
        return {f"{split}/{k}": v for split, values in m.items() if isinstance(values, dict)
                for k, v in values.items() if isinstance(v, (int, float))}

    lines = []
    for b in backends:
        runs = [flat(m) for m in metrics[b]]
        same = all(r == runs[0] for r in runs[1:])
        lines.append(f"- {b}: {len(runs)} runs of `configs/quickstart.yaml` (seed 42): metrics "
                     + ("**identical** in every run" if same else "**differ** between runs: "
                        + ", ".join(f"{k} {min(r[k] for r in runs)}..{max(r[k] for r in runs)}"
                                    for k in runs[0] if len({r[k] for r in runs}) > 1)))
    if len(backends) == 2:
        a, b = (flat(metrics[x][0]) for x in backends)
        worst = max(a, key=lambda k: abs(a[k] - b[k]))
        lines.append(f"- {backends[0]} against {backends[1]}: largest difference "
                     f"{abs(a[worst] - b[worst]):.2g} ({worst}: {a[worst]:.6f} against "
                     f"{b[worst]:.6f})")
    return lines


def report(epoch: dict, procs: dict, metrics: dict[str, list[dict]], backends: list[str],
           args: argparse.Namespace, load_before: float, load_after: float) -> str:
    pair = lambda a, b: [x / y for x, y in zip(a, b)]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(a, b)]  # noqa: E731
    rows = []
    for b in backends:
        for clock, name in (("wall", "wall"), ("epochs", "CPU")):
            mine, theirs = epoch[b, "nntrain", clock], epoch[b, "keras", clock]
            rows.append([b, name, ms(mine), ms(theirs), ms(diff(mine, theirs)),
                         ratio(pair(mine, theirs))])
    epoch_table = table(["backend", "clock", "nntrain ms/epoch", "model.fit ms/epoch",
                         "nntrain's extra ms/epoch", "nntrain / model.fit"], rows)
    out = [
        f"### TensorFlow and JAX backends ({args.reps} repetitions, paired; JAX's compilation "
        f"cache {args.jax_cache}; 1-minute load average {load_before:.2f} before, "
        f"{load_after:.2f} after)", "",
        "Quickstart-sized epoch (700 rows, batch 32, 100 validation rows, early stopping off): "
        "wall and CPU time from one epoch's end to the next's, median of epochs "
        f"2-{args.epochs} of each run, then median (range) over runs. The target: 10 ms.", "",
        epoch_table, ""]
    if len(backends) == 2:
        first, second = backends
        speed = [[kind, *(ratio(pair(epoch[first, kind, c], epoch[second, kind, c]))
                          for c in ("wall", "epochs"))] for kind in ("nntrain", "keras")]
        out += [table(["", f"{first} / {second}, wall", f"{first} / {second}, CPU"], speed), ""]
    names = sorted({n for _, n, _ in procs}, key=list(commands(Path("."), "")).index)
    proc_rows = [[f"`{n}`", *(f"{median(procs[b, n, 'wall']):.2f} / "
                              f"{median(procs[b, n, 'cpu']):.2f}" for b in backends)]
                 for n in names]
    out += ["Whole processes, seconds wall / CPU (median):", "",
            table(["command", *backends], proc_rows), "",
            "The tutorial through nntrain minus the hand-written script (paired; the target: "
            "+0.5 s wall, pictures on):", ""]
    tutorial = "nntrain train configs/tutorial.yaml"
    for b in backends:
        for label in (tutorial, f"{tutorial}, no plots"):
            for clock in ("wall", "cpu"):
                d = diff(procs[b, label, clock], procs[b, "python tests/reference_tutorial.py",
                                                       clock])
                out.append(f"- {b}, {'pictures on' if label == tutorial else 'no plots'}, "
                           f"{clock}: **{median(d):+.2f} s** ({min(d):+.2f} to {max(d):+.2f})")
    out += ["", "Same seed, same metrics (`metrics.json` of the quickstart runs above):", "",
            *same_seed(metrics, backends)]
    return "\n".join(out)


if __name__ == "__main__":
    main()
