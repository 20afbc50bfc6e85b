"""The fixed cost of a command: wall time of whole processes, as a user waits for them.

    .venv/bin/python benchmarks/overhead.py [--reps 5]

`nntrain --help`, `nntrain validate configs/tutorial.yaml`, and the tutorial end to end:
`nntrain train configs/tutorial.yaml` (as shipped, so with its plots; and without them) against
`python tests/reference_tutorial.py`, the same job written by hand in Keras. Importing
TensorFlow alone is the floor every TensorFlow program pays. Commands alternate; medians of
the repetitions. Prints markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, log, median, table, wall_time  # noqa: E402

NNTRAIN = str(BIN / "nntrain")
PYTHON = sys.executable


def commands(runs: Path) -> dict[str, list[str]]:
    """What is timed, by the name the report gives it. Each run writes under ``runs``."""
    train = [NNTRAIN, "train", "configs/tutorial.yaml", "--quiet", "--set",
             f"output.dir={runs}"]
    return {
        "nntrain --help": [NNTRAIN, "--help"],
        "nntrain validate configs/tutorial.yaml": [NNTRAIN, "validate", "configs/tutorial.yaml"],
        "python -c 'import tensorflow'": [PYTHON, "-c", "import tensorflow"],
        "python tests/reference_tutorial.py": [PYTHON, "tests/reference_tutorial.py"],
        "nntrain train configs/tutorial.yaml": train,
        "nntrain train configs/tutorial.yaml (output.plots=false)":
            [*train, "--set", "output.plots=false"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        timed = commands(Path(tmp))
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for name, command in timed.items():  # once untimed: the OS caches the files
            wall_time(command)
        for rep in range(args.reps):
            for name, command in timed.items():
                seconds[name].append(wall_time(command))
                log(f"rep {rep + 1}/{args.reps} {name}: {seconds[name][-1]:.2f} s")
    print(report(seconds, args.reps))


def report(seconds: dict[str, list[float]], reps: int) -> str:
    rows = [[f"`{name}`", f"{median(s):.2f}", f"{min(s):.2f}-{max(s):.2f}"]
            for name, s in seconds.items()]
    train = seconds["nntrain train configs/tutorial.yaml"]
    bare = seconds["nntrain train configs/tutorial.yaml (output.plots=false)"]
    reference = seconds["python tests/reference_tutorial.py"]
    extra = [a - b for a, b in zip(train, reference)]
    extra_bare = [a - b for a, b in zip(bare, reference)]
    return "\n".join([
        f"### Fixed overhead (wall time of whole processes, median of {reps})", "",
        table(["command", "seconds", "range"], rows), "",
        f"The tutorial end to end costs **{median(extra):+.2f} s** over the hand-written script "
        f"(paired, range {min(extra):+.2f} to {max(extra):+.2f}); without the plots "
        f"**{median(extra_bare):+.2f} s** ({min(extra_bare):+.2f} to {max(extra_bare):+.2f}).",
    ]) + "\n"


if __name__ == "__main__":
    main()
