"""Peak memory of `nntrain train` on folders of N, 4N and 16N pictures, under a memory limit
that the largest folder's pixels do not fit in.

    .venv/bin/python benchmarks/image_memory.py [N]

Writes N, 4N and 16N shapes pictures of 64x64 RGB (default N = 2,000: the largest folder is
32,000 pictures, ~370 MiB of PNG, 1,500 MiB as the float32 pixels the model sees; about 3
minutes to write and 4 to train on 2 busy cores) into a temporary directory. Each folder is
trained on for one epoch of a small CNN, in a fresh process whose data segment is limited to
LIMIT (RLIMIT_DATA: the heap and every private writable mapping, which is where decoded pixels
would live; unlike RLIMIT_AS it does not count the address space TensorFlow reserves without
using it). The process's peak resident memory is read from the kernel (wait4's ru_maxrss).
A control process shows the limit bites: allocating the largest folder's pixels under it fails.
Printed, never asserted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, load_average, log, machine, table

sys.path.insert(0, str(ROOT))

SIZE = 64
PICTURE = SIZE * SIZE * 3 * 4  # bytes of one picture as float32 pixels
LIMIT = 2**30  # the data segment of each training process: 1 GiB
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


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (LIMIT, LIMIT))


def run(command: list[str]) -> tuple[int, float, float, float, str]:
    """(exit code, peak resident MiB, seconds, CPU seconds, stderr) of one process under LIMIT."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=limited, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                     "TF_CPP_MIN_LOG_LEVEL": "3"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    return (os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, seconds,
            usage.ru_utime + usage.ru_stime, err)  # ru_maxrss is in KiB on Linux


def main() -> None:
    from nntrain.data.shapes import write_shapes

    base = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    info = machine()
    log(f"machine: {info['cpu']}; tensorflow {info['tensorflow']}; load {load_average():.1f}")
    code, tf_alone, _, _, err = run([sys.executable, "-c", "import tensorflow, keras"])
    if code:
        raise RuntimeError(f"importing TensorFlow under the limit failed:\n{err}")
    results = []
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for n in (base, 4 * base, 16 * base):
            folder = tmp_path / f"shapes-{n}"
            log(f"writing {n:,} pictures of {SIZE}x{SIZE} to {folder}")
            write_shapes(folder, n, SIZE, 0.1, seed=n)
            disk = sum(f.stat().st_size for f in folder.rglob("*.png")) / 2**20
            config = tmp_path / f"run-{n}.yaml"
            config.write_text(CONFIG.format(path=folder, runs=tmp_path / "runs"))
            code, mib, seconds, cpu, err = run([sys.executable, "-m", "nntrain", "train",
                                                str(config), "-q"])
            loads.append(load_average())
            if code:
                raise RuntimeError(f"nntrain train on {n:,} pictures failed (exit {code}) "
                                   f"under a {LIMIT / 2**20:,.0f} MiB data limit:\n{err}")
            log(f"{n:,} pictures: peak {mib:,.0f} MiB in {seconds:.0f} s")
            results.append((n, disk, n * PICTURE / 2**20, mib, seconds, cpu))
    largest = results[-1]
    # The control: the largest folder's pixels, allocated and written under the same limit.
    control = (f"import numpy; a = numpy.empty(({largest[0]}, {SIZE}, {SIZE}, 3), "
               "numpy.float32); a.fill(0)")
    refused, *_ = run([sys.executable, "-c", control])

    print(f"peak resident memory of `nntrain train` (one epoch, batch 64, {SIZE}x{SIZE} RGB "
          f"pictures), each process's data segment limited to {LIMIT / 2**20:,.0f} MiB "
          f"(RLIMIT_DATA); {info['cpu']}; load average {min(loads):.1f}-{max(loads):.1f}")
    print(table(["pictures", "PNG MiB", "float32 pixels MiB", "peak RSS MiB", "seconds",
                 "CPU seconds"],
                [(f"{n:,}", f"{disk:,.0f}", f"{pixels:,.0f}", f"{mib:,.0f}", f"{sec:.0f}",
                  f"{cpu:.0f}") for n, disk, pixels, mib, sec, cpu in results]))
    print(f"TensorFlow and Keras imported, nothing else: peak {tf_alone:,.0f} MiB")
    print(f"4x the pictures: peak RSS x{results[1][3] / results[0][3]:.2f}; "
          f"16x: x{largest[3] / results[0][3]:.2f}")
    print(f"{largest[0]:,} pictures: float32 pixels {largest[2]:,.0f} MiB = "
          f"{largest[2] / (LIMIT / 2**20):.2f}x the {LIMIT / 2**20:,.0f} MiB limit, "
          f"{largest[2] / largest[3]:.2f}x the whole process's peak; trained: yes")
    print(f"control, allocating those pixels under the same limit: "
          f"{'refused (exit %d)' % refused if refused else 'NOT refused: the limit does not bite'}")


if __name__ == "__main__":
    main()
