"""Import Keras (and TensorFlow, on its backend) quietly, once, only when a command needs them."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

_keras: Any = None


@contextlib.contextmanager
def _captured_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it if the block fails.

    TensorFlow's C++ start-up banners (oneDNN, CPU features, "could not find CUDA drivers") are
    written straight to fd 2 before its logging is configured, so TF_CPP_MIN_LOG_LEVEL does not
    reach them. Standard error is ours, for progress and errors, so they are held back.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            os.write(2, tmp.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_stderr() -> contextlib.AbstractContextManager[None]:
    """Hold back TensorFlow's C++ log lines (TFLite converter and interpreter chatter) for a
    block; they are shown only if the block fails."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "0":
        return contextlib.nullcontext()
    return _captured_stderr()


def import_keras() -> Any:
    """Return the keras module, on the backend KERAS_BACKEND names (nntrain.backend sets it
    before this runs; nntrain.backend.DEFAULT when nothing did)."""
    global _keras
    if _keras is not None:
        return _keras
    from nntrain.backend import DEFAULT

    os.environ.setdefault("KERAS_BACKEND", DEFAULT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's (or XLA's) start-up messages.
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"
    # Keras imports matplotlib.pyplot at start-up when it is installed, for
    # keras.visualization, which nntrain never calls: half a second of CPU on every command
    # (nntrain.plots imports matplotlib, without pyplot, when a run draws its pictures). On
    # TensorFlow, its TFLite module imports JAX when installed (as it is with nntrain), for a
    # converter from JAX functions that nntrain never calls: a second more.
    hidden = ("matplotlib", "matplotlib.pyplot",
              *(("jax",) if os.environ["KERAS_BACKEND"] == "tensorflow" else ()))
    with _captured_stderr() if quiet else contextlib.nullcontext(), _hidden(*hidden):
        if os.environ["KERAS_BACKEND"] == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()  # probes for GPUs, which logs on machines without
        import keras
    if os.environ["KERAS_BACKEND"] == "jax":
        from nntrain.backend import use_compile_cache

        use_compile_cache()  # before anything compiles
    _keras = keras
    return keras


def import_tensorflow() -> Any:
    """Return the tensorflow module, imported quietly. On the JAX backend only what needs it
    imports it (streamed CSV, TensorBoard logs, export), so a run's start-up does not pay
    for it otherwise."""
    import_keras()
    if "tensorflow" not in sys.modules:
        quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") != "0"
        with _captured_stderr() if quiet else contextlib.nullcontext():
            import tensorflow

            tensorflow.config.list_physical_devices()  # its GPU probe logs, as in import_keras
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def _hidden(*names: str) -> Iterator[None]:
    """Make ``import NAME`` fail with ImportError in the block, for each of ``names`` not
    imported already; afterwards they import as usual."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import` raise ImportError
    try:
        yield
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


def split_cpu(count: int) -> None:
    """Present the CPU as ``count`` logical devices (distribution.cpu_devices).

    TensorFlow fixes its logical devices when it first runs an op, so this must come after
    import_keras (which runs none) and before anything else touches TensorFlow; ``prepare``
    calls it first. A process that has run TensorFlow already gets a RuntimeError."""
    import_keras()
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
