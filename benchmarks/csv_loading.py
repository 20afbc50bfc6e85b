"""How fast nntrain loads a CSV file, against pyarrow's CSV reader and numpy.loadtxt.

    .venv/bin/python benchmarks/csv_loading.py [ROWS] [--repeat N]

Writes a ROWS x 20 CSV (default 1,000,000 rows: float32 values to 9 significant digits, an
integer label column) into a temporary directory and reads it once untimed (into the page
cache). Then times each reader, the best of N rounds (default 3) with the readers taking turns,
and prints the ratios to pyarrow. nntrain's exact reader (the csv module, cell by cell: what
every line-numbered error comes from) is timed too, for scale. pyarrow is optional:
`pip install -e .[bench]`. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import ROOT, log, machine, table

sys.path.insert(0, str(ROOT))

FEATURES = 20


def write_file(path: Path, rows: int) -> None:
    """Gaussian blobs, 9 significant digits (what float32 needs to round-trip) and a label."""
    from nntrain.data.synthetic import generate

    x, y = generate("blobs", rows, FEATURES, 3, 1.0, seed=42)
    header = ",".join([*(f"x{i}" for i in range(FEATURES)), "y"])
    np.savetxt(path, np.column_stack([x, y]), fmt=["%.9g"] * FEATURES + ["%d"], delimiter=",",
               header=header, comments="")


def readers(path: Path) -> dict[str, Callable[[], object]]:
    from nntrain.data.csvfile import parse_csv, read_csv

    def exact() -> object:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return parse_csv(fh, "y", None, path.name)

    out: dict[str, Callable[[], object]] = {
        "nntrain (read_csv)": lambda: read_csv(path, "y"),
        "numpy.loadtxt": lambda: np.loadtxt(path, delimiter=",", skiprows=1,
                                            dtype=np.float32),
        "nntrain exact reader (csv module)": exact,
    }
    try:
        import pyarrow.csv as pa_csv
    except ImportError:
        log("pyarrow is not installed (pip install -e .[bench]); ratios are to numpy.loadtxt")
    else:
        # To numpy arrays, as nntrain ends up with: Arrow's columns alone would flatter it.
        out["pyarrow.csv.read_csv"] = lambda: np.column_stack(
            [c.to_numpy() for c in pa_csv.read_csv(path).columns])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    log(f"machine: {info['cpu']}; numpy {info['numpy']}, python {info['python']}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        log(f"writing {args.rows:,} x {FEATURES} to {path}")
        write_file(path, args.rows)
        size = path.stat().st_size
        path.read_bytes()  # into the page cache: every reader starts from the same place
        # Round-robin, best of N: on a shared machine the fastest run is the least disturbed.
        runs: dict[str, list[float]] = {name: [] for name in readers(path)}
        for round_ in range(args.repeat):
            for name, read in readers(path).items():
                t0 = time.perf_counter()
                read()
                runs[name].append(time.perf_counter() - t0)
                log(f"round {round_ + 1}: {name}: {runs[name][-1]:.2f} s")
        seconds = {name: min(times) for name, times in runs.items()}
    base = "pyarrow.csv.read_csv" if "pyarrow.csv.read_csv" in seconds else "numpy.loadtxt"
    rows = [(name, f"{s:.2f}", f"{args.rows / s:,.0f}", f"{s / seconds[base]:.2f}x")
            for name, s in seconds.items()]
    print(f"{args.rows:,} rows x {FEATURES} features + label, {size / 2**20:,.0f} MiB; "
          f"{info['cpu']}")
    print(table(["reader", "seconds (best)", "rows/s", f"time / {base}"], rows))


if __name__ == "__main__":
    main()
