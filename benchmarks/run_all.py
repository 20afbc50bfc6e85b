"""The whole benchmark suite of issue 9, as one markdown report on stdout.

    .venv/bin/python benchmarks/run_all.py [--reps 5] [--wait 25] [--quick]

Waits (up to --wait minutes) for the machine to be quiet (1-minute load average below
--max-load), since other work on the cores skews every number, then runs train_throughput.py,
overhead.py, inference.py, sweep_overhead.py, then issue 19's: train_throughput.py on JAX,
backends.py and iris.py, in turn. The report starts with the machine, the versions, the
date and the load averages, so that it can be pasted into docs/benchmarks.md as it is.
--quick runs tiny sizes once: a check that the suite works, not a measurement.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_average, log, machine  # noqa: E402

HERE = Path(__file__).resolve().parent


def wait_until_quiet(max_load: float, minutes: float) -> bool:
    """True when the 1-minute load average fell below max_load within ``minutes``."""
    deadline = time.monotonic() + minutes * 60
    while True:
        load = load_average()
        if load < max_load:
            return True
        if time.monotonic() >= deadline:
            return False
        log(f"waiting for a quiet machine: load average {load:.2f} >= {max_load}")
        time.sleep(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--wait", type=float, default=25, metavar="MINUTES",
                        help="how long to wait for a quiet machine (0: start at once)")
    parser.add_argument("--max-load", type=float, default=0.6)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, once: a smoke test")
    args = parser.parse_args()
    reps = "1" if args.quick else str(args.reps)
    scripts = [
        ["train_throughput.py", "--reps", reps,
         *(["--samples", "2000", "--batch-sizes", "256"] if args.quick else [])],
        ["overhead.py", "--reps", reps],
        ["inference.py", "--reps", reps, *(["--rows", "5000"] if args.quick else [])],
        ["sweep_overhead.py", *(["--trials", "3"] if args.quick else [])],
        # issue 19: the same throughput on JAX, both backends per epoch and end to end, and
        # an iris-sized run against scikit-learn
        ["train_throughput.py", "--reps", reps, "--backend", "jax",
         "--variants", "nntrain,keras_spe32,torch",
         *(["--samples", "2000", "--batch-sizes", "256"] if args.quick else [])],
        ["backends.py", "--reps", reps, *(["--epochs", "4"] if args.quick else [])],
        ["iris.py", "--reps", reps, *(["--epochs", "10"] if args.quick else [])],
    ]
    wait = 0 if args.quick else args.wait
    quiet = wait_until_quiet(args.max_load, wait)
    loads = [os.getloadavg()]
    started = datetime.datetime.now().astimezone()
    sections = []
    for script, *script_args in scripts:
        log(f"--- {script} {' '.join(script_args)}")
        proc = subprocess.run([sys.executable, str(HERE / script), *script_args], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, check=True)
        sections.append(proc.stdout)
        loads.append(os.getloadavg())
    finished = datetime.datetime.now().astimezone()
    info = machine()
    header = [
        f"## Results of {started:%Y-%m-%d %H:%M %Z}", "",
        f"- machine: {info['cpu']}; {info['platform']}",
        f"- Python {info['python']}, TensorFlow {info['tensorflow']}, Keras {info['keras']}, "
        f"PyTorch {info['torch']}, NumPy {info['numpy']}",
        f"- run: `benchmarks/run_all.py --reps {reps}{' --quick' if args.quick else ''}`, "
        f"{(finished - started).total_seconds() / 60:.0f} minutes",
        "- 1-minute load average at the start and after each script: "
        + ", ".join(f"{load[0]:.2f}" for load in loads)
        + ("" if quiet else f" (**the machine was not quiet**: the load stayed at or above "
           f"{args.max_load} for the {wait:g} minutes waited, so other work shared the cores "
           "and the numbers are low and noisy)"),
        "",
    ]
    print("\n".join(header) + "\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
