"""Where nntrain's per-epoch checkpoint time goes on a tiny epoch (issue 19), paired in one run.

    .venv/bin/python benchmarks/checkpoint_cost.py [--reps 3] [--epochs 40] [--backend jax]

Each measurement is a fresh process training configs/quickstart.yaml (700 rows, batch 32,
early stopping off, no plots) through ``nntrain.training.train.train``, in three variants that
alternate: as shipped (a write waiting its turn gives way to a newer one), "waiting" (the policy
before: each submit first waits for the previous write to finish), and with the checkpoint
switched off (no snapshot, nothing submitted to the writer thread: what a run costs without
any per-epoch save). Within the shipped variant the
pieces are timed where they run: on the training thread the snapshot copy and the time
``BackgroundWriter.submit`` blocks; on the writer thread the checkpoint's serialization, its
fsyncs and the history + manifest writes. Medians of epochs 2..N, then median (range) over
runs; CPU is the whole process's (every thread). Prints markdown on stdout.
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
from _common import ROOT, load_average, log, median, table  # noqa: E402

QUICKSTART = ROOT / "configs" / "quickstart.yaml"
VARIANTS = ("shipped", "waiting", "no checkpoint")
PIECES = ("snapshot", "submit blocked", "checkpoint write", "fsync", "history+manifest",
          "manifest record")


def worker(variant: str, epochs: int) -> dict[str, list[float]]:
    from nntrain.config import load_config
    from nntrain.runs import rundir
    from nntrain.training import checkpoint
    from nntrain.training import train as train_mod

    spent: dict[str, list[float]] = {q: [] for p in PIECES for q in (p, p + " (CPU)")}

    def timed(piece: str, fn):
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[piece].append(time.perf_counter() - t0)
                spent[piece + " (CPU)"].append(time.thread_time() - c0)
        return wrapper

    if variant == "waiting":
        submit = rundir.BackgroundWriter.submit

        def waiting_submit(self, job):
            self.wait()
            submit(self, job)
        rundir.BackgroundWriter.submit = timed("submit blocked", waiting_submit)
    if variant == "no checkpoint":
        checkpoint.snapshot = lambda *a, **k: {}
        rundir.BackgroundWriter.submit = lambda self, job: None
    else:
        checkpoint.snapshot = timed("snapshot", checkpoint.snapshot)
        if variant == "shipped":
            rundir.BackgroundWriter.submit = timed("submit blocked",
                                                   rundir.BackgroundWriter.submit)
        checkpoint.write = timed("checkpoint write", checkpoint.write)
        real_fsync = os.fsync
        rundir.os.fsync = timed("fsync", real_fsync)  # every atomic write's, on any thread
        write_json, write_text = rundir.RunDir.write_json, rundir.RunDir.write_text
        rundir.RunDir.write_json = timed("history+manifest", write_json)
        rundir.RunDir.write_text = timed("history+manifest", write_text)
        train_mod.manifest = timed("manifest record", train_mod.manifest)
    marks: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_config(QUICKSTART, [f"training.epochs={epochs}",
                                          "training.early_stopping=null", "output.plots=false",
                                          f"output.dir={json.dumps(tmp)}"])
        train_mod.train(loaded, argv=["bench"], on_epoch=lambda e, t, logs, s: marks.append(
            (time.process_time(), time.perf_counter())))
    out = {"cpu": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
           "wall": [b[1] - a[1] for a, b in zip(marks, marks[1:])]}
    # Per epoch: the pieces' sums divided by the epochs (some run more than once an epoch).
    out.update({p: [sum(v) / epochs] for p, v in spent.items() if v})
    out["writes"] = [len(spent["checkpoint write"]) / epochs] if spent["checkpoint write"] \
        else [0.0]
    return out


def run_worker(backend: str, variant: str, epochs: int) -> dict[str, list[float]]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend,
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--worker", variant, "--epochs",
                           str(epochs)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.2f} ({min(values) * 1000:.2f}-{max(values) * 1000:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--worker", choices=VARIANTS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs)))
        return
    load_before = load_average()
    got: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps):
        for variant in VARIANTS:
            out = run_worker(args.backend, variant, args.epochs)
            for key, values in out.items():
                got.setdefault((variant, key), []).append(median(values))
            log(f"rep {rep + 1}/{args.reps} {variant}: "
                f"{got[variant, 'cpu'][-1] * 1000:.1f} CPU ms/epoch, "
                f"{got[variant, 'wall'][-1] * 1000:.1f} wall ms/epoch")
    log(json.dumps({"/".join(k): v for k, v in got.items()}))
    diff = lambda a, b: [x - y for x, y in zip(a, b)]  # noqa: E731
    rows = [[clock, *(ms(got[v, key]) for v in VARIANTS),
             *(ms(diff(got[v, key], got["no checkpoint", key])) for v in VARIANTS[:2])]
            for clock, key in (("CPU", "cpu"), ("wall", "wall"))]
    pieces = [[p, *(f"{ms(got[v, p])} / {ms(got[v, p + ' (CPU)'])}" for v in VARIANTS[:2])]
              for p in PIECES if ("shipped", p) in got]
    print("\n".join([
        f"### Checkpoint cost per quickstart epoch, {args.backend} ({args.reps} repetitions, "
        f"paired; 1-minute load average {load_before:.2f} before, {load_average():.2f} after)",
        "", table(["clock", *(f"{v}, ms/epoch" for v in VARIANTS),
                   *(f"{v}: the checkpoint's cost" for v in VARIANTS[:2])], rows), "",
        "Where it goes (ms per epoch, wall / that thread's CPU, summed over the epoch's calls; "
        "the writer thread's pieces overlap training; checkpoints written per epoch: shipped "
        f"{median(got['shipped', 'writes']):.2f}, waiting {median(got['waiting', 'writes']):.2f}"
        "):", "",
        table(["piece", *VARIANTS[:2]], pieces)]))


if __name__ == "__main__":
    main()
