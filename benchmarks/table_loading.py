"""What a text (categorical) column costs when a CSV file is loaded, against the same file with
the column written as integer codes.

    .venv/bin/python benchmarks/table_loading.py [ROWS] [--repeat N]

Writes two ROWS x 5 CSV files (default 100,000 rows): four float columns and a color, as text
(`red`, ...) in one file and as a code (0-3) in the other, and an integer label. Times
nntrain's whole load (``load_dataset``: reading, splitting and, for the text file, the
vocabulary and the encoding), the best of N rounds (default 3) with the files taking turns,
and prints the ratio. The text file goes through the table reader (data/tabular.py: Python's
csv module, then numpy per column); the codes through the numeric fast path. Timings are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import ROOT, log, machine, table

sys.path.insert(0, str(ROOT))

COLORS = np.array(["red", "green", "blue", "yellow"])


def write_files(directory: Path, rows: int) -> dict[str, Path]:
    rs = np.random.RandomState(42)
    x = rs.randn(rows, 4)
    code = rs.randint(0, len(COLORS), rows)
    numbers = [f"{a:.6g},{b:.6g},{c:.6g},{d:.6g}" for a, b, c, d in x.tolist()]
    files = {}
    for name, color in (("codes", code.astype(str)), ("text", COLORS[code])):
        path = directory / f"{name}.csv"
        path.write_text("a,b,c,d,color,y\n" + "".join(
            f"{n},{c},{k % 2}\n" for n, c, k in zip(numbers, color, code)))
        files[name] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from nntrain.config.schema import CsvData
    from nntrain.data.dataset import load_dataset

    info = machine()
    log(f"machine: {info['cpu']}; numpy {info['numpy']}, python {info['python']}")
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.rows)
        runs: dict[str, list[float]] = {name: [] for name in files}
        for round_ in range(args.repeat):
            for name, path in files.items():
                cfg = CsvData.model_validate({"source": "csv", "path": str(path), "target": "y"})
                t0 = time.perf_counter()
                ds = load_dataset(cfg, 42, Path(tmp))
                runs[name].append(time.perf_counter() - t0)
                assert (ds.table is not None) == (name == "text")
                log(f"round {round_ + 1}: {name}: {runs[name][-1]:.2f} s")
    best = {name: min(times) for name, times in runs.items()}
    rows = [(f"color as {name}", f"{s:.2f}", f"{args.rows / s:,.0f}",
             f"{s / best['codes']:.2f}x") for name, s in best.items()]
    print(f"{args.rows:,} rows x 4 floats + color + label; {info['cpu']}")
    print(table(["file", "seconds (best)", "rows/s", "time / codes"], rows))


if __name__ == "__main__":
    main()
