"""Peak memory of `nntrain train` on a CSV file and on one 10 times larger, streamed
(data.stream: true) and loaded whole.

    .venv/bin/python benchmarks/stream_memory.py [ROWS]

Writes ROWS and 10 x ROWS rows of 20 features (default 100,000 and 1,000,000) into a temporary
directory, trains one epoch on each in a fresh process and reads that process's peak resident
memory from the kernel (wait4's ru_maxrss). Streamed, the peak should not grow with the file;
loaded, it grows with it. Printed, never asserted.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, log, machine, table

sys.path.insert(0, str(ROOT))

FEATURES = 20
CONFIG = """
data:
  source: csv
  path: {path}
  target: y
  stream: {stream}
  normalize: standard
  split: {{validation: 0.1, test: 0.1}}
model:
  layers:
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 3, activation: softmax}}
training:
  loss: sparse_categorical_crossentropy
  epochs: 1
  batch_size: 1024  # big batches: the point is memory, not a long run
output:
  dir: {runs}
  plots: false
"""


def write_file(path: Path, rows: int) -> None:
    from nntrain.data.csvfile import write_csv
    from nntrain.data.synthetic import generate

    with open(path, "w") as fh:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            x, y = generate("blobs", n, FEATURES, 3, 1.0, seed=start)
            buf = io.StringIO()
            write_csv(x, y, buf)
            text = buf.getvalue()
            fh.write(text if start == 0 else text.split("\n", 1)[1])


def peak_rss(config: Path) -> tuple[float, float]:
    """(peak resident MiB, seconds) of one `nntrain train` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nntrain", "train", str(config), "-q"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT),
                                 "TF_CPP_MIN_LOG_LEVEL": "3"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"nntrain train {config} failed:\n{proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, seconds  # KiB on Linux


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    info = machine()
    log(f"machine: {info['cpu']}; tensorflow {info['tensorflow']}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for n in (rows, 10 * rows):
            data = tmp_path / f"data-{n}.csv"
            log(f"writing {n:,} rows to {data}")
            write_file(data, n)
            size = data.stat().st_size / 2**20
            for stream in ("true", "false"):
                config = tmp_path / f"run-{n}-{stream}.yaml"
                config.write_text(CONFIG.format(path=data, stream=stream, runs=tmp_path / "runs"))
                mib, seconds = peak_rss(config)
                log(f"{n:,} rows, stream {stream}: peak {mib:,.0f} MiB in {seconds:.0f} s")
                results.append((n, size, stream, mib, seconds))
            data.unlink()
    by = {(n, s): mib for n, _, s, mib, _ in results}
    print(f"peak resident memory of `nntrain train` (one epoch); {info['cpu']}")
    print(table(["rows", "file MiB", "data.stream", "peak RSS MiB", "seconds"],
                [(f"{n:,}", f"{size:,.0f}", s, f"{mib:,.0f}", f"{sec:.0f}")
                 for n, size, s, mib, sec in results]))
    for stream in ("true", "false"):
        ratio = by[(10 * rows, stream)] / by[(rows, stream)]
        print(f"10x the file, data.stream {stream}: peak RSS x{ratio:.2f}")


if __name__ == "__main__":
    main()
