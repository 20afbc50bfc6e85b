"""Which Keras backend a command runs on: TensorFlow or JAX.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice is made here before
anything imports keras, and a process that has imported it on another backend already cannot
switch (the error says so). What chooses, first to last: the config's ``training.backend``
(``--backend`` sets it), the KERAS_BACKEND environment variable, DEFAULT.

A trained .keras file holds no backend-specific state: a model trained on one backend loads
in plain Keras on the other. Several machines (tf.distribute's multi_worker) need TensorFlow;
one machine's devices train on either (keras.distribution on JAX). TensorFlow itself is
imported on the JAX backend only by what needs it (streamed CSV, TensorBoard, export).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
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
