"""Peak memory of `nntrain train` on a folder of pictures and on one 4 times larger.

    .venv/bin/python benchmarks/image_memory.py [PICTURES]

Writes PICTURES and 4 x PICTURES shapes pictures of 64x64 RGB (default 4,000 and 16,000; the
larger folder is 750 MiB as float32 pixels) into a temporary directory, trains one epoch of a
small CNN on each in a fresh process and reads that process's peak resident memory from the
kernel (wait4's ru_maxrss). The pictures are streamed from disk (data/images.py): the peak
should grow far less than the pixels do. Printed, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, log, machine, table

sys.path.insert(0, str(ROOT))

SIZE = 64
CONFIG = """
data:
  source: images
  path: {path}
  split: {{validation: 0.1, test: 0.1}}
model:
  layers:
    - {{type: rescaling, scale: 0.00392156862745098}}
    - {{type: conv2d, filters: 8, kernel_size: 3, strides: 2, activation: relu}}
    - {{type: conv2d, filters: 16, kernel_size: 3, strides: 2, activation: relu}}
    - {{type: global_max_pooling2d}}
    - {{type: dense, units: 3, activation: softmax}}
training:
  loss: sparse_categorical_crossentropy
  epochs: 1
  batch_size: 64
output:
  dir: {runs}
  plots: false
"""


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
    from nntrain.data.shapes import write_shapes

    pictures = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000
    info = machine()
    log(f"machine: {info['cpu']}; tensorflow {info['tensorflow']}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for n in (pictures, 4 * pictures):
            folder = tmp_path / f"shapes-{n}"
            log(f"writing {n:,} pictures of {SIZE}x{SIZE} to {folder}")
            write_shapes(folder, n, SIZE, 0.1, seed=n)
            disk = sum(f.stat().st_size for f in folder.rglob("*.png")) / 2**20
            pixels = n * SIZE * SIZE * 3 * 4 / 2**20  # float32, as the model sees them
            config = tmp_path / f"run-{n}.yaml"
            config.write_text(CONFIG.format(path=folder, runs=tmp_path / "runs"))
            mib, seconds = peak_rss(config)
            log(f"{n:,} pictures: peak {mib:,.0f} MiB in {seconds:.0f} s")
            results.append((n, disk, pixels, mib, seconds))
    print(f"peak resident memory of `nntrain train` (one epoch, {SIZE}x{SIZE} RGB pictures); "
          f"{info['cpu']}")
    print(table(["pictures", "PNG MiB", "float32 pixels MiB", "peak RSS MiB", "seconds"],
                [(f"{n:,}", f"{disk:,.0f}", f"{pixels:,.0f}", f"{mib:,.0f}", f"{sec:.0f}")
                 for n, disk, pixels, mib, sec in results]))
    print(f"4x the pictures: peak RSS x{results[1][3] / results[0][3]:.2f}")


if __name__ == "__main__":
    main()
