"""TensorFlow against JAX as nntrain's Keras backend, paired in one run.

    .venv/bin/python benchmarks/backends.py [--reps 5] [--epochs 12]

Every measurement is a fresh process with KERAS_BACKEND set, and the variants alternate
(tf nntrain, tf keras, tf processes, jax nntrain, ...); ratios are taken within one repetition.
Times are CPU seconds (user + system), not wall time: on a shared 2-core machine wall time
mostly measures the neighbours. What is measured:

- a quickstart-sized epoch (configs/quickstart.yaml: 700 training rows, batch 32, 100
  validation rows, no early stopping), from one epoch's end to the next's, median of epochs
  2..N of a run, through ``nntrain.train.train`` and through a hand-written ``model.fit`` of
  the same network; nntrain's time minus Keras's is the work nntrain adds per epoch (its
  shuffle, checkpoint, history and progress callback; both validate);
- whole processes: importing keras, ``nntrain train configs/tutorial.yaml`` against
  ``tests/reference_tutorial.py`` (the same job by hand), and the quickstart as shipped;
- the 1-minute load average before and after, printed with the tables.

Prints markdown on stdout, progress on stderr. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_average, log, median, table  # noqa: E402

BACKENDS = ("tensorflow", "jax")
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


# --- workers: one measurement each, in a fresh process ------------------------------------

def epoch_nntrain(epochs: int) -> list[float]:
    """CPU seconds per epoch of nntrain's own loop on the quickstart, end to end of epoch."""
    from nntrain.config import load_config
    from nntrain.training.train import train

    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_config(QUICKSTART, [f"training.epochs={epochs}",
                                          "training.early_stopping=null", "output.plots=false",
                                          f"output.dir={json.dumps(tmp)}"])
        train(loaded, argv=["bench"],
              on_epoch=lambda e, t, logs, s: seconds.append(time.process_time()))
    return [b - a for a, b in zip(seconds, seconds[1:])]


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
    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.process_time())

    y = ds.y_train.astype(np.float32).reshape(-1, 1)
    yv = ds.y_val.astype(np.float32).reshape(-1, 1)
    model.fit(ds.x_train, y, validation_data=(ds.x_val, yv), batch_size=32, epochs=epochs,
              shuffle=True, verbose=0, callbacks=[Clock()])
    return [b - a for a, b in zip(seconds, seconds[1:])]


def worker_main(kind: str, epochs: int) -> None:
    seconds = epoch_nntrain(epochs) if kind == "nntrain" else epoch_keras(epochs)
    print(json.dumps({"epochs": seconds}))


def run_worker(backend: str, kind: str, epochs: int) -> list[float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend,
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--epochs", str(epochs)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["epochs"]


def cpu_time(command: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one whole process and its children. On a shared
    machine wall time mostly measures the neighbours; CPU time is what the command costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --- the report ---------------------------------------------------------------------------

def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.1f} ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


def ratio(values: list[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--worker", choices=["nntrain", "keras"])
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.epochs)
        return
    load_before = load_average()
    epoch = {(b, k): [] for b in BACKENDS for k in ("nntrain", "keras")}
    procs: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "import keras": [sys.executable, "-c", "import keras"],
            "python tests/reference_tutorial.py": [sys.executable, "tests/reference_tutorial.py"],
            "nntrain train configs/quickstart.yaml": [sys.executable, "-m", "nntrain", "train",
                                                      "configs/quickstart.yaml", "--quiet",
                                                      "--set", f"output.dir={tmp}"],
            # python -m nntrain with PYTHONPATH: this checkout's nntrain, the one measured
            "nntrain train configs/tutorial.yaml": [sys.executable, "-m", "nntrain", "train",
                                                    "configs/tutorial.yaml", "--quiet",
                                                    "--set", f"output.dir={tmp}"],
        }
        for rep in range(args.reps):
            for b in BACKENDS:
                for k in ("nntrain", "keras"):
                    # from the end of epoch 1 (which compiles): the steady state
                    epoch[b, k].append(median(run_worker(b, k, args.epochs)))
                    log(f"rep {rep + 1}/{args.reps} {b} {k}: {epoch[b, k][-1] * 1000:.1f} CPU ms/epoch")
                for name, command in commands.items():
                    env = {**os.environ, "KERAS_BACKEND": b, "TF_CPP_MIN_LOG_LEVEL": "2",
                           "PYTHONPATH": str(ROOT)}
                    procs.setdefault((b, name), []).append(cpu_time(command, env=env))
                    log(f"rep {rep + 1}/{args.reps} {b} {name}: {procs[b, name][-1]:.2f} CPU s")
    load_after = load_average()
    pair = lambda a, b: [x / y for x, y in zip(a, b)]  # noqa: E731
    diff = lambda a, b: [x - y for x, y in zip(a, b)]  # noqa: E731
    rows = []
    for b in BACKENDS:
        rows.append([b, ms(epoch[b, "nntrain"]), ms(epoch[b, "keras"]),
                     ms(diff(epoch[b, "nntrain"], epoch[b, "keras"]))])
    epoch_table = table(["backend", "nntrain CPU ms/epoch", "model.fit CPU ms/epoch",
                         "nntrain's extra CPU ms/epoch"], rows)
    speed = [["nntrain", ratio(pair(epoch["tensorflow", "nntrain"], epoch["jax", "nntrain"]))],
             ["model.fit", ratio(pair(epoch["tensorflow", "keras"], epoch["jax", "keras"]))]]
    names = ["import keras", "python tests/reference_tutorial.py",
             "nntrain train configs/tutorial.yaml", "nntrain train configs/quickstart.yaml"]
    proc_rows = [[f"`{n}`", *(f"{median(procs[b, n]):.2f}" for b in BACKENDS),
                  ratio(pair(procs["tensorflow", n], procs["jax", n]))] for n in names]
    extra = {b: diff(procs[b, names[2]], procs[b, names[1]]) for b in BACKENDS}
    print("\n".join([
        f"### TensorFlow and JAX backends ({args.reps} repetitions, paired; 1-minute load "
        f"average {load_before:.2f} before, {load_after:.2f} after)", "",
        f"Quickstart-sized epoch (700 rows, batch 32, 100 validation rows): CPU time from one "
        f"epoch's end to the next's, median of epochs 2-{args.epochs} of each run, then median "
        "(range) over runs:", "",
        epoch_table, "",
        table(["", "TensorFlow time / JAX time"], speed), "",
        "Whole processes, CPU seconds (user + system, median), on each backend:", "",
        table(["command", "tensorflow", "jax", "TensorFlow / JAX"], proc_rows), "",
        "The tutorial through nntrain minus the hand-written script, CPU seconds: "
        + "; ".join(f"{b} **{median(extra[b]):+.2f} s** ({min(extra[b]):+.2f} to "
                    f"{max(extra[b]):+.2f})" for b in BACKENDS) + ".",
    ]))


if __name__ == "__main__":
    main()
