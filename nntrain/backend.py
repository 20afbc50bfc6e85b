"""Which Keras backend a command runs on: TensorFlow or JAX.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice is made here before
anything imports keras, and a process that has imported it on another backend already cannot
switch (the error says so). What chooses, first to last: the config's ``training.backend``
(``--backend`` sets it), the KERAS_BACKEND environment variable, DEFAULT.

A trained .keras file holds no backend-specific state: a model trained on one backend loads
in plain Keras on the other. Several machines (tf.distribute's multi_worker) need TensorFlow;
one machine's devices train on either (keras.distribution on JAX). TensorFlow itself is
imported on the JAX backend only by what needs it (streamed CSV, TensorBoard, export).

On JAX, compiled programs are kept between runs in JAX's persistent compilation cache
(use_compile_cache): most of a small run's CPU is XLA compiling the same few programs again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.errors import ConfigError, UsageError

BACKENDS = ("tensorflow", "jax")
# JAX is the default: on small data an epoch costs a few milliseconds where TensorFlow spends
# ~100 ms of overhead (docs/benchmarks.md); --backend tensorflow or KERAS_BACKEND chooses it.
DEFAULT = "jax"


def imported() -> str | None:
    """The backend keras was imported with in this process, or None before the import."""
    if "keras" not in sys.modules or sys.modules["keras"] is None:
        return None
    return sys.modules["keras"].backend.backend()


def requested() -> str | None:
    """KERAS_BACKEND, when it names a backend nntrain runs on."""
    name = os.environ.get("KERAS_BACKEND", "").strip().lower()
    return name or None


def choose(configured: str | None, *, needs_tensorflow: str | None = None) -> str:
    """The backend a run uses: ``configured`` (training.backend), else KERAS_BACKEND, else
    DEFAULT. ``needs_tensorflow`` names what in the config needs TensorFlow
    (multi_worker): then an unchosen backend is TensorFlow and a chosen JAX is a config error."""
    if configured is None and requested() is not None and requested() not in BACKENDS:
        raise UsageError(f"KERAS_BACKEND={requested()} is not a backend nntrain trains on; "
                         f"choose one of: {', '.join(BACKENDS)}")
    chosen = configured or requested()
    if needs_tensorflow and chosen not in (None, "tensorflow"):
        where = "training.backend" if configured else "KERAS_BACKEND"
        raise ConfigError.at(("training", "backend"), f"{needs_tensorflow} runs on "
                             f"tf.distribute, which needs backend tensorflow, but {where} is "
                             f"{chosen} (JAX trains on one machine's devices only: strategy "
                             "mirrored); use --backend tensorflow")
    return chosen or ("tensorflow" if needs_tensorflow else DEFAULT)


def use(name: str) -> None:
    """Make ``name`` the backend of this process, before keras is imported."""
    current = imported()
    if current is not None and current != name:
        raise UsageError(f"this process imported Keras on the {current} backend already and "
                         f"Keras cannot switch to {name} in the same process; run nntrain in a "
                         f"fresh process (or set KERAS_BACKEND={name} before Python starts)")
    os.environ["KERAS_BACKEND"] = name


def version(name: str) -> dict[str, str]:
    """The versions that decide a backend's numbers, for the manifest; imports nothing new."""
    if name == "jax":
        import jax
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    import tensorflow as tf

    return {"tensorflow": tf.__version__}


def compiled_forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` compiled once for the current backend, as a function of a
    float32 array. model.predict sets up a data pipeline per call; this does not."""
    if imported() == "jax":
        import jax

        # stateless_call on the variables' current values: the function is traced per
        # batch shape (a full batch, the last one) and reused after.
        fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        trainable = [v.value for v in model.trainable_variables]
        other = [v.value for v in model.non_trainable_variables]
        return lambda x: np.asarray(fn(trainable, other, np.asarray(x, np.float32)))
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda x: fn(tf.convert_to_tensor(x, tf.float32)).numpy()


@contextlib.contextmanager
def tensorflow_unneeded() -> Iterator[None]:
    """Keras asks "is TensorFlow installed?" (its lazy handle's ``available``, which imports
    it) before isinstance checks against TensorFlow types when it saves a model, and to seed
    TensorFlow's RNG in set_random_seed. On the JAX backend, while TensorFlow is not loaded,
    no object can be a TensorFlow one and nntrain seeds its tf.data pipelines itself; so for
    this block Keras is told it is missing, sparing a JAX run the seconds of importing it.
    Without Keras's handle (module_utils.tensorflow), plain Keras."""
    try:
        from keras.src.utils import module_utils

        handle = module_utils.tensorflow
    except (ImportError, AttributeError):
        handle = None
    if imported() == "tensorflow" or "tensorflow" in sys.modules \
            or not hasattr(handle, "_available"):
        yield
        return
    saved = handle._available
    handle._available = False
    try:
        yield
    finally:
        handle._available = saved


def set_random_seed(keras: Any, seed: int) -> None:
    """keras.utils.set_random_seed, without importing TensorFlow on the JAX backend."""
    with tensorflow_unneeded():
        keras.utils.set_random_seed(seed)


# JAX's persistent compilation cache. Off with NNTRAIN_COMPILE_CACHE=off.
COMPILE_CACHE_SWITCH = "NNTRAIN_COMPILE_CACHE"
# An entry is one compiled program, ~10 KB for the quickstart's (24 of them); 256 MiB holds
# thousands of runs' worth, and JAX evicts the least recently used entries beyond it.
COMPILE_CACHE_MAX_BYTES = 256 * 2**20
# JAX's defaults skip programs that compile in under a second, which is all of nntrain's on
# small data: together they are most of a small run's CPU. A JAX_* variable the user set wins.
_COMPILE_CACHE_SETTINGS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,  # -1: no size floor, none imposed later
    "jax_compilation_cache_max_size": COMPILE_CACHE_MAX_BYTES,
}


def compile_cache_dir() -> Path | None:
    """Where JAX keeps compiled programs between runs: $JAX_COMPILATION_CACHE_DIR if set,
    else ${XDG_CACHE_HOME:-~/.cache}/nntrain/jax; None when NNTRAIN_COMPILE_CACHE=off."""
    if os.environ.get(COMPILE_CACHE_SWITCH, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nntrain" / "jax"


def use_compile_cache() -> Path | None:
    """Point JAX's persistent compilation cache at compile_cache_dir(), after jax is imported
    and before it compiles anything; the directory in use, or None (off, or unusable: a run
    then compiles as it would without it, and says nothing).

    A cached program is the one XLA would compile again, so the numbers do not change. JAX
    writes an entry in place (not through a rename), with a file lock only when the cache is
    bounded: bounding it also keeps two processes from writing one entry at once. A process
    killed mid-write leaves an entry without its "-atime" stamp, which JAX would then fail to
    read on every run and fail over when it next evicts; such entries are deleted here first,
    under JAX's lock. JAX reports any other error of its cache as a warning and compiles
    instead; those warnings are silenced, since the run goes on with the same numbers."""
    import jax

    path = compile_cache_dir()
    if path is None or not _usable_cache_dir(path):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    for name, value in _COMPILE_CACHE_SETTINGS.items():
        if name.upper() not in os.environ:
            jax.config.update(name, value)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    warnings.filterwarnings("ignore", message=r"Error (reading|writing) persistent "
                            r"compilation cache entry", category=UserWarning)
    return path


def _usable_cache_dir(path: Path) -> bool:
    """Whether the cache can live at ``path``: a directory this process can create, read and
    write, and filelock, which JAX needs to bound the cache, importable."""
    try:
        import filelock
    except ImportError:
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return False
    try:
        # JAX's own lock (lru_cache.LRUCache), so no other process is between its two writes.
        with filelock.FileLock(path / ".lockfile", timeout=2):
            _delete_half_written(path)
    except (OSError, filelock.Timeout):
        return False
    return True


def _delete_half_written(path: Path) -> None:
    """Delete entries whose write was cut short: JAX writes "KEY-cache", then "KEY-atime"."""
    for entry in path.glob("*-cache"):
        stamp = entry.with_name(entry.name[:-len("-cache")] + "-atime")
        if not stamp.exists():
            entry.unlink(missing_ok=True)
    for stamp in path.glob("*-atime"):
        if not stamp.with_name(stamp.name[:-len("-atime")] + "-cache").exists():
            stamp.unlink(missing_ok=True)
