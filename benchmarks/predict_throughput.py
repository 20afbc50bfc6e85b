"""How fast `nntrain predict` runs, and that it streams.

    .venv/bin/python benchmarks/predict_throughput.py RUN_DIR [ROWS]

Times the forward pass alone on BATCH_ROWS-row chunks (the tf.function nntrain uses against
model.predict), then the whole command end to end on a CSV of ROWS rows (default 1,000,000)
written to a temporary file, with the peak memory of that process. Needs the run's features to be
x0, x1, ... (any run trained on generated data).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    run_dir = Path(sys.argv[1])
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    from nntrain.use.load import BATCH_ROWS, forward_pass, load_trained

    trained = load_trained(run_dir)
    model = trained.model
    x = np.random.RandomState(0).randn(BATCH_ROWS * 50, trained.n_inputs).astype(np.float32)
    chunks = [x[i:i + BATCH_ROWS] for i in range(0, len(x), BATCH_ROWS)]
    forward = forward_pass(model)
    for name, fn in (("tf.function forward pass", forward),
                     ("model.predict", lambda c: model.predict(c, verbose=0))):
        fn(chunks[0])  # trace / build once
        t0 = time.perf_counter()
        for c in chunks:
            fn(c)
        seconds = time.perf_counter() - t0
        print(f"{name:<26} {len(x) / seconds:>12,.0f} rows/s  ({BATCH_ROWS}-row chunks)")
    t0 = time.perf_counter()
    model.predict(x, batch_size=BATCH_ROWS, verbose=0)
    seconds = time.perf_counter() - t0
    print(f"{'model.predict':<26} {len(x) / seconds:>12,.0f} rows/s  (all {len(x):,} rows in "
          "one call: not streaming)")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "in.csv"
        with open(data, "w") as fh:
            subprocess.run([sys.executable, "-m", "nntrain", "generate-data", "random", "-n",
                            str(rows), "-f", str(trained.n_inputs)], stdout=fh, check=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "nntrain", "predict",
                                  str(run_dir.resolve()), "--data", str(data)],
                                 stdout=subprocess.DEVNULL, cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        seconds = time.perf_counter() - t0
    assert status == 0, status
    print(f"nntrain predict, {rows:,} rows: {seconds:.1f} s including start-up "
          f"({rows / seconds:,.0f} rows/s); peak memory {usage.ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
