"""An iris-sized run of 200 epochs, end to end, against scikit-learn's MLPClassifier (issue 19).

    .venv/bin/python benchmarks/iris.py [--reps 3] [--epochs 200] [--backends tensorflow,jax]
                                        [--jax-cache cold,warm,off] [--no-plots yes|no]

The rows: scikit-learn's iris (150 rows, 4 inputs, 3 classes; it ships inside scikit-learn),
written to a CSV file; 120 rows train, 30 are scored at the end. The network: Dense(32, relu)
-> Dense(3, softmax), Adam at 0.01, batch size 32, 200 epochs, no validation rows, no early
stopping. What is timed is a whole process, from its start to its result on disk:

    nntrain            `nntrain train iris.yaml` (pictures on, as shipped), per backend
    nntrain, no plots  the same with output.plots=false
    scikit-learn       `python -c ...`: read the CSV, MLPClassifier(hidden_layer_sizes=(32,),
                       batch_size=32, learning_rate_init=0.01, max_iter=200) forced to run all
                       200 epochs (tol=0, n_iter_no_change=200), score the 30 rows, write the
                       score and pickle the model

On JAX, ``--jax-cache`` sets the state of JAX's persistent compilation cache, which nntrain
keeps on by default, one JAX variant per state named (``--jax-cache cold,warm``): ``cold``
(the default) gives every run an empty one, as a first run has; ``warm`` fills one with an
unmeasured run of each variant first, as every later run of the same config finds it; ``off``
turns it off. TensorFlow has no such cache.

The variants alternate within a repetition, and each nntrain time is divided by the
scikit-learn time of the same repetition (paired). Both wall and CPU seconds (user + system)
are reported: on a shared machine wall time includes the neighbours, CPU time does not (but
counts every thread: JAX's and TensorFlow's runtimes spin threads that wall time hides).
Prints markdown on stdout, progress on stderr. Needs the `bench` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (JAX_CACHE_MODES, ROOT, jax_cache_env, load_average, log,  # noqa: E402
                     median, process_times, table)

CONFIG = """\
data:
  source: csv
  path: iris.csv
  target: species
  split: {{validation: 0.0, test: 0.2}}
model:
  layers:
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 3, activation: softmax}}
training:
  loss: sparse_categorical_crossentropy
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [accuracy]
  epochs: {epochs}
  batch_size: 32
  seed: 42
output:
  dir: runs
  name: iris
"""

SKLEARN = """\
import pickle, sys, numpy as np
from sklearn.neural_network import MLPClassifier
rows = np.loadtxt("iris.csv", delimiter=",", skiprows=1)
order = np.random.RandomState(42).permutation(len(rows))
test, train = rows[order[:30]], rows[order[30:]]
clf = MLPClassifier(hidden_layer_sizes=(32,), batch_size=32, learning_rate_init=0.01,
                    max_iter=int(sys.argv[1]), tol=0.0, n_iter_no_change=10**6, random_state=42)
clf.fit(train[:, :4], train[:, 4].astype(int))
score = clf.score(test[:, :4], test[:, 4].astype(int))
open("sklearn-score.txt", "w").write(f"{score}\\n")
pickle.dump(clf, open("sklearn-model.pkl", "wb"))
"""


def write_iris(folder: Path, epochs: int) -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    lines += [",".join([*(f"{v:g}" for v in x), str(int(y))])
              for x, y in zip(iris.data, iris.target)]
    (folder / "iris.csv").write_text("\n".join(lines) + "\n")
    (folder / "iris.yaml").write_text(CONFIG.format(epochs=epochs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--jax-cache", default="cold",
                        help=f"one or more of {','.join(JAX_CACHE_MODES)}: a JAX variant each")
    parser.add_argument("--no-plots", choices=["yes", "no"], default="yes",
                        help="also measure each backend with output.plots=false")
    args = parser.parse_args()
    modes = args.jax_cache.split(",")
    if not set(modes) <= set(JAX_CACHE_MODES):
        parser.error(f"--jax-cache takes {', '.join(JAX_CACHE_MODES)}")
    backends = args.backends.split(",")
    load_before = load_average()
    times: dict[str, list[tuple[float, float]]] = {}
    accuracy: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_iris(folder, args.epochs)
        base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "scikit-learn": ([sys.executable, "-c", SKLEARN, str(args.epochs)], base)}
        train = [sys.executable, "-m", "nntrain", "train", "iris.yaml", "--quiet", "--force"]
        plots = {"": [], ", no plots": ["--set", "output.plots=false"]}
        if args.no_plots == "no":
            del plots[", no plots"]
        for b in backends:
            for mode in (modes if b == "jax" else [""]):
                for suffix, extra in plots.items():
                    name = f"nntrain, {b}{f', {mode} cache' if mode else ''}{suffix}"
                    variants[name] = ([*train, *extra], {**base, "KERAS_BACKEND": b,
                                                         "JAX_CACHE": mode})
        if "warm" in modes:
            for name, (command, env) in variants.items():
                if env.get("JAX_CACHE") == "warm":
                    process_times(command, env={**env, **jax_cache_env("warm", folder)},
                                  cwd=folder)
        for rep in range(args.reps):
            for name, (command, env) in variants.items():
                if env.get("JAX_CACHE"):  # a cold one is a new empty directory every run
                    env = {**env, **jax_cache_env(env["JAX_CACHE"], folder)}
                times.setdefault(name, []).append(process_times(command, env=env, cwd=folder))
                if name == "scikit-learn":
                    score = float((folder / "sklearn-score.txt").read_text())
                else:
                    metrics = json.loads((folder / "runs" / "iris" / "metrics.json").read_text())
                    score = metrics["test"]["accuracy"]
                accuracy.setdefault(name, []).append(score)
                wall, cpu = times[name][-1]
                log(f"rep {rep + 1}/{args.reps} {name}: {wall:.2f} s wall, {cpu:.2f} CPU s, "
                    f"test accuracy {score:.3f}")
    load_after = load_average()
    print(report(times, accuracy, args, load_before, load_after))


def report(times: dict[str, list[tuple[float, float]]], accuracy: dict[str, list[float]],
           args: argparse.Namespace, load_before: float, load_after: float) -> str:
    ref = times["scikit-learn"]
    rows = []
    for name, values in times.items():
        wall = [w for w, _ in values]
        cpu = [c for _, c in values]
        wall_ratio = [w / r[0] for w, r in zip(wall, ref)]
        cpu_ratio = [c / r[1] for c, r in zip(cpu, ref)]
        rows.append([name, f"{median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f})",
                     f"{median(cpu):.2f}", f"{median(wall_ratio):.2f}x",
                     f"{median(cpu_ratio):.2f}x", f"{median(accuracy[name]):.3f}"])
    return "\n".join([
        f"### Iris, {args.epochs} epochs end to end, against scikit-learn ({args.reps} "
        f"repetitions, paired; JAX's compilation cache {args.jax_cache}; 1-minute load "
        f"average {load_before:.2f} before, "
        f"{load_after:.2f} after)", "",
        "Whole processes (start to result on disk), median (range) of wall seconds, median CPU "
        "seconds, and the paired ratio to scikit-learn's MLPClassifier (the target: within "
        "3x):", "",
        table(["variant", "wall s", "CPU s", "wall / scikit-learn", "CPU / scikit-learn",
               "test accuracy"], rows), ""])


if __name__ == "__main__":
    main()
