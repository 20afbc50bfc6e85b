"""The strategy a config asks for (its ``distribution`` section).

Nothing here is home-made. On TensorFlow, mirrored runs use tf.distribute.MirroredStrategy,
multi-worker runs MultiWorkerMirroredStrategy, which start their own gRPC servers and
all-reduce the gradients. On JAX, mirrored runs use Keras's own keras.distribution.DataParallel
over this machine's devices (each batch split along its rows, the variables replicated, XLA
doing the all-reduce); multi-worker runs need TensorFlow. This module only builds the
strategy, checks that the other workers are there and agree on the config (before TensorFlow
is imported), checks again before the first collective (which would otherwise wait for them),
sets how soon a lost worker is noticed (distribution.heartbeat_timeout), and works around three
Keras bugs.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from nntrain.config.schema import DATA_PATH_KEYS, Distribution
from nntrain.errors import ConfigError, NntrainError, UsageError
from nntrain.runs.record import config_changes
from nntrain.tf import import_keras, split_cpu


@dataclass(frozen=True)
class Cluster:
    workers: list[str]
    index: int

    @property
    def chief(self) -> bool:
        return self.index == 0


def cluster_of(cfg: Distribution) -> Cluster:
    """The workers and this worker's index: from the config, else from TF_CONFIG."""
    if cfg.workers is not None and cfg.worker_index is not None:
        return Cluster(list(cfg.workers), cfg.worker_index)
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ConfigError.at(("distribution", "workers"), "strategy: multi_worker needs the "
                             "workers (distribution.workers and worker_index, or --workers and "
                             "--worker-index) or a TF_CONFIG environment variable")
    try:
        spec = json.loads(text)
        workers = list(spec["cluster"]["worker"])
        task = spec["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"TF_CONFIG: expected {{\"cluster\": {{\"worker\": [\"host:port\", "
                         f"...]}}, \"task\": {{\"type\": \"worker\", \"index\": N}}}}, could "
                         f"not read {exc!s}") from None
    if task.get("type", "worker") != "worker":
        raise UsageError(f"TF_CONFIG: task type '{task.get('type')}' is not supported; "
                         "MultiWorkerMirroredStrategy needs every task to be a worker")
    if not 0 <= index < len(workers):
        raise UsageError(f"TF_CONFIG: task index {index} is out of range for "
                         + (f"the {len(workers)} workers (0 to {len(workers) - 1})"
                            if len(workers) > 1 else "its one worker (0)"))
    return Cluster(workers, index)


def make_strategy(cfg: Distribution) -> tuple[Any, Cluster | None]:
    """(the strategy or None, the cluster for multi_worker). Call it before TensorFlow runs
    anything: cpu_devices changes the devices TensorFlow starts with."""
    if import_keras().backend.backend() == "jax":
        return _jax_data_parallel(cfg), None
    if cfg.cpu_devices is not None:
        try:
            split_cpu(cfg.cpu_devices)
        except RuntimeError:
            raise ConfigError.at(("distribution", "cpu_devices"), "TensorFlow started in this "
                                 "process already; cpu_devices takes effect only in a fresh "
                                 "process") from None
    if cfg.strategy == "none":
        return None, None
    import_keras()
    import tensorflow as tf

    if cfg.strategy == "mirrored":
        devices = cfg.devices or _local_devices(tf)
        try:
            return tf.distribute.MirroredStrategy(devices), None
        except (ValueError, RuntimeError) as exc:
            raise ConfigError.at(("distribution", "devices"), f"{exc}; this machine has "
                                 f"{', '.join(_local_devices(tf))}") from None
    cluster = cluster_of(cfg)
    # Creating the strategy blocks, holding the GIL, until every worker's server is up, with
    # no timeout of its own: check first that the others are there (see wait_for_peers).
    wait_for_peers(cluster, cfg.timeout)
    _set_heartbeat_timeout(cluster, cfg.heartbeat_timeout)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": cluster.workers}), task_type="worker",
        task_id=cluster.index, rpc_layer="grpc")
    # A worker that vanishes between the check and here would leave the constructor waiting
    # for ever; faulthandler's watchdog thread needs no GIL and ends the process (exit 1).
    faulthandler.dump_traceback_later(cfg.timeout, exit=True)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver,
            communication_options=tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=cfg.timeout))
    finally:
        faulthandler.cancel_dump_traceback_later()
    _patch_keras_multi_worker()
    return strategy, cluster


def _set_heartbeat_timeout(cluster: Cluster, seconds: float) -> None:
    """How soon the workers notice one that stopped: tf.distribute's coordination service
    counts a worker lost after this many seconds without its heartbeat, and the others' next
    collective then fails (see lost_peer). TensorFlow's own 10 s, plus the time to end the
    step, kept a user waiting about 20 s. MultiWorkerMirroredStrategy configures the service
    itself only when nothing did, with no way to pass the timeout: nntrain configures it first,
    as the strategy would (one standalone service, led by worker 0), with the timeout added."""
    import inspect

    import tensorflow as tf

    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.eager import context
        configure = context.context().configure_coordination_service
        expected = "heartbeat_timeout_in_ms" in inspect.signature(configure).parameters
    except (ImportError, AttributeError):
        expected = False
    if not expected:
        raise NntrainError(f"multi-worker training sets distribution.heartbeat_timeout through "
                           f"tensorflow.python.eager.context's configure_coordination_service, "
                           f"which TensorFlow {tf.__version__} does not have as expected; use "
                           f"TensorFlow 2 (tested with {TESTED_TENSORFLOW}), or train on one "
                           "machine")
    if context.context().coordination_service is not None:
        return  # configured already in this process: it takes effect only once
    configure(service_type="standalone", service_leader="/job:worker/replica:0/task:0",
              heartbeat_timeout_in_ms=int(seconds * 1000),
              coordinated_jobs=[coordination_config_pb2.CoordinatedJob(
                  name="worker", num_tasks=len(cluster.workers))])


def split_jax_cpu(cfg: Distribution) -> None:
    """distribution.cpu_devices on JAX: XLA reads its host device count from XLA_FLAGS when
    JAX starts its CPU backend, so this is set before keras (and so jax) is imported;
    _jax_data_parallel checks that it took effect."""
    if cfg.cpu_devices is None:
        return
    flag = "--xla_force_host_platform_device_count"
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag + "=")]
    os.environ["XLA_FLAGS"] = " ".join([*kept, f"{flag}={cfg.cpu_devices}"])


def _jax_data_parallel(cfg: Distribution) -> Any:
    """keras.distribution.DataParallel over the config's devices (all GPUs, else the CPU
    devices), or None for strategy: none."""
    import jax
    import keras

    if cfg.cpu_devices is not None and jax.device_count("cpu") != cfg.cpu_devices:
        raise ConfigError.at(("distribution", "cpu_devices"), f"JAX started in this process "
                             f"already, with {jax.device_count('cpu')} CPU device(s); "
                             "cpu_devices takes effect only in a fresh process")
    if cfg.strategy == "none":
        return None
    available = keras.distribution.list_devices("cpu" if cfg.cpu_devices else None)
    devices = available
    if cfg.devices:
        # TensorFlow's names (/gpu:0, /device:GPU:0) are accepted too: JAX's are gpu:0.
        devices = [re.sub(r"^/?(device:)?", "", d).lower() for d in cfg.devices]
        known = {f"{d.platform}:{d.id}" for d in [*jax.devices(), *jax.devices("cpu")]}
        unknown = [d for d, name in zip(cfg.devices, devices) if name not in known]
        if unknown:
            raise ConfigError.at(("distribution", "devices"), f"no device {unknown[0]} on "
                                 f"this machine; it has {', '.join(sorted(known))}")
    _patch_keras_uneven_batches()
    return keras.distribution.DataParallel(devices=devices)


_uneven_patched = False


# The Keras version the workarounds below are tested with (constraints.txt pins it).
TESTED_KERAS = "3.15"
TESTED_TENSORFLOW = "2.21"  # for the coordination service's settings (_set_heartbeat_timeout)


def _keras_internal(module: str, name: str, params: list[str], what: str,
                    instead: str) -> tuple[Any, Any]:
    """(module, function) of the Keras internal a workaround replaces, checked first: a Keras
    whose function is missing or takes other leading parameters is refused in one line, rather
    than patched blindly."""
    import importlib
    import inspect

    import keras

    try:
        found = importlib.import_module(module)
    except ImportError:
        found = None
    original = getattr(found, name, None)
    if original is None or not keras.__version__.startswith("3.") or \
            list(inspect.signature(original).parameters)[:len(params)] != params:
        raise NntrainError(f"{what} works around a Keras bug by replacing {module}.{name}, "
                           f"which Keras {keras.__version__} does not have as expected; use "
                           f"Keras 3 (tested with {TESTED_KERAS}), {instead}")
    return found, original


def _patch_keras_uneven_batches() -> None:
    """Keras 3.15's DataParallel on JAX splits every batch evenly across the devices, and
    fails ("IndivisibleError") on a batch whose rows do not divide: the last batch of an
    epoch, of a validation or test pass, of a prediction. Such a batch is given whole to every
    device instead (replicated): the numbers are the same, computed once per device."""
    global _uneven_patched
    if _uneven_patched:
        return
    import jax

    distribution_lib, original = _keras_internal(
        "keras.src.backend.jax.distribution_lib", "distribute_data_input",
        ["per_process_batch", "layout", "batch_dim_name"],
        "mirrored training on JAX", "or backend tensorflow")

    def distribute_data_input(per_process_batch: Any, layout: Any, batch_dim_name: str) -> Any:
        sharding = getattr(layout, "backend_layout", layout)
        parts = sharding.mesh.shape[batch_dim_name]
        rows = per_process_batch.shape[0] if per_process_batch.shape else 0
        if rows % parts and jax.process_count() == 1:
            whole = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
            return jax.device_put(per_process_batch, whole)
        return original(per_process_batch, layout, batch_dim_name)

    distribution_lib.distribute_data_input = distribute_data_input
    _uneven_patched = True


def is_jax_distribution(strategy: Any) -> bool:
    """Whether ``strategy`` is a keras.distribution one (JAX), not tf.distribute's."""
    return strategy is not None and type(strategy).__module__.startswith("keras.")


def replicas(strategy: Any) -> int:
    """How many copies of the model train in step: devices (and workers)."""
    if strategy is None:
        return 1
    if is_jax_distribution(strategy):
        return int(strategy.device_mesh.devices.size)
    return int(strategy.num_replicas_in_sync)


def _local_devices(tf: Any) -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in gpus or tf.config.list_logical_devices("CPU")]


# This worker's port, held from the first check of the peers (before TensorFlow is imported)
# until make_strategy hands it to TensorFlow's server.
_held: socket.socket | None = None


def find_peers(cfg: Distribution, config: dict[str, Any]) -> None:
    """multi_worker, before TensorFlow is imported (seconds, a minute on a loaded machine): wait
    for every other worker to answer, so that a missing or misaddressed one fails at once, and
    agree on the config (``config``, resolved, is this worker's) and the workers list: each
    other worker compares its own with the chief's, and the run starts only if none differs
    (see below). This worker's port stays held meanwhile, through the import, so that the
    others' checks see it too; make_strategy checks again, after the import, and frees it."""
    global _held
    release_port()
    cluster = cluster_of(cfg)
    deadline = time.monotonic() + cfg.timeout
    listener = _listen(cluster)
    try:
        # The agreement first: the chief waits in it for every worker, so that one that left
        # (its config differed) is never waited for by the others.
        if cluster.chief:
            _agree_as_chief(listener, cluster, config, deadline, cfg.timeout)
        else:
            _agree_with_chief(cluster, config, deadline, cfg.timeout)
        _connect_all(cluster, deadline, cfg.timeout)
    except BaseException:
        listener.close()
        raise
    _held = listener


# Keys that may differ between the workers of one run: where each finds the data and writes,
# and which worker it is (the workers list itself is compared on its own).
_PER_WORKER = ("distribution.", "output.",
               *(f"data.{'.'.join(key)}:" for key in DATA_PATH_KEYS))


def config_differences(chief: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """What in this worker's resolved config differs from the chief's, beyond the keys each
    worker sets for itself, as 'key: chief's -> mine' lines."""
    return [c for c in config_changes(chief, mine) if not c.startswith(_PER_WORKER)]


# The agreement, over a TCP connection from each other worker to the chief's port, one line
# at a time: the worker says who it is; the chief sends its resolved config and workers list
# (JSON); the worker answers "ok" or "differs" with the differences (JSON), and one that
# differs stops there (exit 2). Once every worker has answered, the chief tells the others to
# go on ("go") or to stop because one differs ("stop" and why): a run starts on every worker
# or on none, and nobody waits for a worker that left.
_HELLO = "nntrain-worker"


def _agree_as_chief(listener: socket.socket, cluster: Cluster, config: dict[str, Any],
                    deadline: float, timeout: float) -> None:
    waiting = set(range(1, len(cluster.workers)))
    answered: list[socket.socket] = []
    differs: dict[int, list[str]] = {}
    text = json.dumps({"config": config, "workers": cluster.workers}) + "\n"
    try:
        while waiting:
            try:
                conn = _accept(listener, deadline)
            except TimeoutError:
                if differs:
                    break  # told below, with the differences
                late = min(waiting)
                _connect(cluster, late, time.monotonic(), timeout).close()  # says why, if it
                raise NntrainError(f"worker {late} ({cluster.workers[late]}) did not answer "
                                   f"within {timeout:g}s; start every worker with the same "
                                   "nntrain version and workers list, or raise "
                                   "distribution.timeout") from None
            lines = _Lines(conn, deadline)
            try:
                hello, _, index = lines.read().partition(" ")
                if hello != _HELLO or not index.isdigit():
                    conn.close()  # a check that the port answers, or a stranger
                    continue
                conn.sendall(text.encode())
                verdict, _, detail = lines.read().partition(" ")
            except OSError:  # TimeoutError too: that worker went away, or is slow to answer
                conn.close()
                continue
            if verdict == "differs":
                differs[int(index)] = json.loads(detail)
                waiting.discard(int(index))
                conn.close()
            elif verdict == "ok" and int(index) in waiting:
                waiting.discard(int(index))
                answered.append(conn)
            else:
                conn.close()  # gone before it answered
        reason = "; ".join(
            f"worker {i}{f' ({cluster.workers[i]})' if i < len(cluster.workers) else ''} has a "
            f"config that differs from the chief's: {'; '.join(changes)}"
            for i, changes in sorted(differs.items()))
        for conn in answered:
            with contextlib.suppress(OSError):
                conn.sendall((f"stop {reason}" if reason else "go").encode() + b"\n")
    finally:
        for conn in answered:
            conn.close()
    if reason:
        raise NntrainError(f"{reason}; start every worker with the same config and --set "
                           "options")


def _agree_with_chief(cluster: Cluster, config: dict[str, Any], deadline: float,
                      timeout: float) -> None:
    try:
        with _connect(cluster, 0, deadline, timeout) as conn:
            lines = _Lines(conn, deadline)
            conn.sendall(f"{_HELLO} {cluster.index}\n".encode())
            chief = json.loads(lines.read())
            changes = config_differences(chief["config"], config)
            if chief["workers"] != cluster.workers:
                changes.append(f"distribution.workers: {chief['workers']!r} -> "
                               f"{cluster.workers!r}")
            if changes:
                conn.sendall(f"differs {json.dumps(changes)}\n".encode())
            else:
                conn.sendall(b"ok\n")
                answer, _, reason = lines.read().partition(" ")
    except (OSError, ValueError, KeyError) as exc:  # ValueError, KeyError: no config came
        raise NntrainError(f"worker 0 ({cluster.workers[0]}), the chief, "
                           + (f"did not send its config within {timeout:g}s"
                              if isinstance(exc, TimeoutError) else "closed the connection")
                           + "; start every worker with the same nntrain version and workers "
                           "list, or raise distribution.timeout") from None
    if changes:
        raise UsageError(f"this worker's config differs from the chief's: {'; '.join(changes)}"
                         "; start every worker with the same config and --set options")
    if answer != "go":
        raise NntrainError(f"the chief stopped the run: {reason}" if answer == "stop" else
                           f"worker 0 ({cluster.workers[0]}), the chief, went away before the "
                           "run started")


def _accept(listener: socket.socket, deadline: float) -> socket.socket:
    """The next connection to ``listener``; TimeoutError after ``deadline``."""
    listener.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return listener.accept()[0]
    finally:
        listener.settimeout(None)


class _Lines:
    """Lines read from a connection, each by ``deadline`` (TimeoutError after it); "" at the
    end of the connection."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn, self.deadline, self.buffer = conn, deadline, b""

    def read(self) -> str:
        while b"\n" not in self.buffer:
            self.conn.settimeout(max(0.01, self.deadline - time.monotonic()))
            chunk = self.conn.recv(65536)
            if not chunk:
                return ""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")


def release_port() -> None:
    """Free this worker's port if find_peers holds it."""
    global _held
    if _held is not None:
        _held.close()
        _held = None


def wait_for_peers(cluster: Cluster, timeout: float) -> None:
    """Return when every other worker accepts TCP connections; raise after ``timeout``s.

    Meanwhile this worker listens on its own port, so that the others' checks see it; the
    port is freed on return for TensorFlow's server (the others retry through the gap)."""
    release_port()
    with _listen(cluster):
        _connect_all(cluster, time.monotonic() + timeout, timeout)


def _listen(cluster: Cluster) -> socket.socket:
    _, _, own_port = cluster.workers[cluster.index].rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(own_port)))
        listener.listen(16)
    except OSError as exc:
        listener.close()
        raise NntrainError(f"worker {cluster.index} ({cluster.workers[cluster.index]}): cannot "
                           f"listen on port {own_port}: {exc.strerror or exc}") from None
    return listener


def _connect_all(cluster: Cluster, deadline: float, timeout: float) -> None:
    """Connect to every other worker, retrying until ``deadline``."""
    for i in range(len(cluster.workers)):
        if i != cluster.index:
            _connect(cluster, i, deadline, timeout).close()


def _connect(cluster: Cluster, i: int, deadline: float, timeout: float) -> socket.socket:
    """A connection to worker ``i``, retried until ``deadline`` (it may not listen yet)."""
    host, _, port = cluster.workers[i].rpartition(":")
    while True:
        try:
            return socket.create_connection((host.strip("[]"), int(port)), timeout=max(
                0.1, min(2.0, deadline - time.monotonic())))
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise NntrainError(f"worker {i} ({cluster.workers[i]}) did not answer within "
                                   f"{timeout:g}s ({exc.strerror or exc}); start every worker "
                                   "with the same workers list, or raise distribution.timeout"
                                   ) from None
            time.sleep(0.2)


def prepare_model(model: Any, strategy: Any) -> None:
    """Per-model part of the Keras multi-worker workaround (see _patch_keras_multi_worker)."""
    if not _multi_worker(strategy):
        return
    import tensorflow as tf

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        # Keras all-reduces the first batch only to learn its shapes, with a reduce that fails
        # across workers; the local replica's batch has the same shapes.
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: v.values[0] if isinstance(v, tf.distribute.DistributedValues)
                    else v, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build


_patched = False


def _patch_keras_multi_worker() -> None:
    """Keras 3.15 cannot fit() under MultiWorkerMirroredStrategy (keras-team/keras#20585): it
    averages each step's scalar logs across workers with axis=0, which scalars lack. Average
    scalars with axis=None instead. The epoch's logs do not depend on this: Keras reads them
    from the metric variables, which tf.distribute sums across all replicas."""
    global _patched
    if _patched:
        return
    trainer, original = _keras_internal(
        "keras.src.backend.tensorflow.trainer", "reduce_per_replica",
        ["values", "strategy", "reduction"], "multi-worker training", "or train on one machine")

    def reduce_per_replica(values: Any, strategy: Any, reduction: str = "auto") -> Any:
        if reduction != "auto" or not _multi_worker(strategy):
            return original(values, strategy, reduction)
        import tensorflow as tf

        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)

    trainer.reduce_per_replica = reduce_per_replica
    _patched = True


def _multi_worker(strategy: Any) -> bool:
    if strategy is None or is_jax_distribution(strategy):  # no TensorFlow to import
        return False
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def is_multi_worker(strategy: Any) -> bool:
    return strategy is not None and _multi_worker(strategy)


def from_chief(strategy: Any, payload: bytes) -> bytes:
    """The chief's ``payload`` on every worker (the others' payloads are ignored).

    Every worker must call this at the same point: it is two all-reduces (the length, then
    the bytes as int32 words) in which only the first replica, on the chief, adds anything,
    so the sum is the chief's bytes exactly, whatever they encode."""
    import numpy as np
    import tensorflow as tf

    @tf.function
    def chief_sum(value: Any) -> Any:
        def step(v: Any) -> Any:
            ctx = tf.distribute.get_replica_context()
            first = tf.equal(ctx.replica_id_in_sync_group, 0)
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                  tf.where(first, v, tf.zeros_like(v)))
        return strategy.run(step, args=(value,))

    def reduce(array: np.ndarray) -> np.ndarray:
        return strategy.experimental_local_results(chief_sum(tf.constant(array)))[0].numpy()

    size = int(reduce(np.array([len(payload)], np.int64))[0])
    words = np.zeros(-(-size // 4), np.int32)
    if len(payload) == size:  # the chief; the others' buffers stay zero
        words.view(np.uint8)[:size] = np.frombuffer(payload, np.uint8)
    return reduce(words).view(np.uint8)[:size].tobytes()


def lost_peer(exc: BaseException, strategy: Any) -> str | None:
    """'worker 1 (host:port)' when ``exc`` is TensorFlow reporting that another worker of a
    multi-worker run stopped (its heartbeats or collectives failed), else None."""
    if not is_multi_worker(strategy):
        return None
    import tensorflow as tf

    if not isinstance(exc, (tf.errors.UnavailableError, tf.errors.AbortedError,
                            tf.errors.DeadlineExceededError)):
        return None
    workers = strategy.cluster_resolver.cluster_spec().as_dict().get("worker", [])
    tasks = sorted({int(t) for t in re.findall(r"/job:worker/(?:replica:\d+/)?task:(\d+)",
                                               str(exc))})
    own = strategy.cluster_resolver.task_id
    others = [t for t in tasks if t != own]  # messages name this worker's devices too
    if not others:
        return "another worker"
    return ", ".join(f"worker {t} ({workers[t]})" if t < len(workers) else f"worker {t}"
                     for t in others)
