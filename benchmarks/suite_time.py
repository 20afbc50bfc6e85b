"""The test suite's wall time and CPU time, serial or on pytest-xdist workers (issue 13's
target: the whole suite within 5 minutes on 2 cores). Measured, never asserted.

    .venv/bin/python benchmarks/suite_time.py                 # as `python3 tasks.py test` runs it
    .venv/bin/python benchmarks/suite_time.py -n 0            # in one process, for the ratio
    .venv/bin/python benchmarks/suite_time.py -n 2 tests/test_resume.py

Extra arguments go to pytest (default: -n auto --dist worksteal). Prints one line on stdout:
the wall time, the CPU time of pytest and every process it waited for, and the 1-minute load
average before and after (other work on the cores inflates both times).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(args: list[str]) -> int:
    if not any(a.startswith(("-n", "--dist")) for a in args):
        args = ["-n", "auto", "--dist", "worksteal", *args]
    before = os.getloadavg()[0]
    start = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            *args], cwd=ROOT, stdout=sys.stderr)
    wall = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"pytest {' '.join(args)}: exit {code}, wall {wall / 60:.1f} min, CPU "
          f"{(usage.ru_utime + usage.ru_stime) / 60:.1f} min, load {before:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
