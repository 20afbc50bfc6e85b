#!/usr/bin/env python3
"""Set up the development environment and run things in it. Needs only Python 3.10+.

    python3 tasks.py quickstart   # set up .venv, then train the built-in example
    python3 tasks.py test         # set up .venv, then run the test suite in parallel, one
                                  # worker per CPU (extra args go to pytest)
    python3 tasks.py bench        # add the benchmarks' extras to .venv, run benchmarks/run_all.py

All are safe to run again: the environment is reused, and reinstalled only when
pyproject.toml or constraints.txt changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _stamp(extras: str) -> str:
    h = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def setup(extras: str = "") -> None:
    """Create .venv and install nntrain (editable) with the pinned versions, once."""
    if sys.version_info < (3, 10):
        sys.exit(f"nntrain needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV.relative_to(ROOT)}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    stamp_file = VENV / f".nntrain-installed{'-' + extras if extras else ''}"
    stamp = _stamp(extras)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    target = f".[{extras}]" if extras else "."
    print(f"installing nntrain{f'[{extras}]' if extras else ''} and its pinned dependencies "
          "into .venv (TensorFlow is large: the first time takes a few minutes)", file=sys.stderr)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--constraint", str(ROOT / "constraints.txt"), "--editable", target],
                   cwd=ROOT, check=True)
    stamp_file.write_text(stamp)


def run(*args: str) -> int:
    return subprocess.call([str(a) for a in args], cwd=ROOT)


def _parallel(args: list[str]) -> list[str]:
    """pytest-xdist's options, unless the arguments choose their own (-n, -p no:xdist).
    One worker per CPU: most of the suite's time is TensorFlow starting and training in
    processes of their own, so the tests overlap well. worksteal: the tests' lengths differ a
    hundredfold, and an idle worker takes over the other's queue."""
    if any(a.startswith(("-n", "--numprocesses", "--dist")) or a == "no:xdist" for a in args):
        return []
    return ["-n", "auto", "--dist", "worksteal"]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "quickstart":
        setup()
        return run(BIN / "nntrain", "train", "configs/quickstart.yaml", *argv[1:])
    if command == "test":
        setup("test")
        return run(PYTHON, "-m", "pytest", *_parallel(argv[1:]), *argv[1:])
    if command == "bench":
        setup("bench")
        return run(PYTHON, ROOT / "benchmarks" / "run_all.py", *argv[1:])
    if command == "setup":
        setup("test")
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"setup failed: {' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
