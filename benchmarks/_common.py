"""What the benchmark scripts share: running one measurement in a fresh process, medians, the
machine's description and markdown tables. Timings are printed, never asserted."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the environment's scripts: nntrain lives beside python

# The network of issue 9: Dense(256, relu) -> Dense(256, relu) -> Dense(1, sigmoid) on 20
# inputs. One multiply-add is 2 FLOPs; training costs ~3x the forward pass (the forward pass,
# the gradients of the weights and the gradients of the activations).
FEATURES, HIDDEN = 20, 256
FORWARD_FLOPS = 2 * (FEATURES * HIDDEN + HIDDEN * HIDDEN + HIDDEN * 1)  # 141,824
TRAIN_FLOPS = 3 * FORWARD_FLOPS  # 425,472 per sample
SEED = 42


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def worker(script: Path, *args: str, timeout: float = 900, backend: str = "tensorflow") -> dict:
    """Run ``script --worker ...`` in a fresh Python process and return the JSON it prints
    last. A fresh process per measurement: TensorFlow and PyTorch never share one, and each
    variant starts from the same state (no warm caches from the variant before it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend}
    proc = subprocess.run([sys.executable, str(script), "--worker", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} --worker {' '.join(args)} exited with "
                           f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wall_time(command: Sequence[str], **kwargs) -> float:
    """Seconds one command takes as a whole process; it must succeed."""
    t0 = time.perf_counter()
    subprocess.run(list(command), cwd=kwargs.pop("cwd", ROOT), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - t0


def process_times(command: Sequence[str], **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process and its children; it must succeed.
    CPU time is user + system of every thread: on a shared machine wall time also measures
    the neighbours, CPU time what the command itself costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(list(command), cwd=kwargs.pop("cwd", ROOT), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; the first column left-aligned, numbers right-aligned."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> float:
    return os.getloadavg()[0]


def machine() -> dict[str, str]:
    """The machine and versions the numbers come from (imports nothing heavy)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "cpu": f"{os.cpu_count()} cores, {cpu_model()}",
        "python": platform.python_version(),
        "tensorflow": v("tensorflow"),
        "keras": v("keras"),
        "torch": v("torch"),
        "numpy": v("numpy"),
        "platform": platform.platform(),
    }


JAX_CACHE_MODES = ("cold", "warm", "off")


def jax_cache_env(mode: str, folder: Path) -> dict[str, str]:
    """The environment for JAX's persistent compilation cache (nntrain keeps it on by default
    on JAX): ``cold`` a new empty directory each call (what a first run costs: every program
    compiled and written), ``warm`` one directory under ``folder`` that the caller fills with
    an unmeasured run first, ``off`` NNTRAIN_COMPILE_CACHE=off. The user's own
    JAX_COMPILATION_CACHE_DIR is never used."""
    if mode == "off":
        return {"NNTRAIN_COMPILE_CACHE": "off"}
    if mode == "cold":
        import tempfile

        return {"JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="jax-cold-", dir=folder)}
    return {"JAX_COMPILATION_CACHE_DIR": str(folder / "jax-warm")}
