"""Checkpoints that resume bit for bit.

One file, ``checkpoint.npz``, written atomically (a kill during the write leaves the previous
checkpoint intact): ``snapshot`` copies the arrays at the end of an epoch, and training.train
hands ``write`` (which serializes them) to a background thread (runs.rundir.BackgroundWriter)
while the next epoch trains. When epochs are shorter than a write, a snapshot that is still
waiting is replaced by the next epoch's: the file on disk is then an epoch or a few behind while
training (the newest whose write has finished), and exact at the end of the run, on a stop or
a signal. It holds every variable that decides what training does next, by
position; on restore each is checked by its path without Keras's per-process counters, and by
its shape (``_structural``):

- the model's variables, including Dropout's seed-generator state and BatchNorm statistics
  (``model.variables``, not just ``model.weights``: Keras's own saving drops the RNG state);
- the optimizer's variables, including its step counter and learning rate;
- the metric accumulators of an epoch stopped half-way, so its logged averages come out the same;
- the best weights so far, when early stopping restores them;
- the loop's own state (epoch, step, history, early-stopping counters) as JSON.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.errors import UsageError
from nntrain.runs.rundir import atomic_write

CHECKPOINT = "checkpoint.npz"


@dataclass
class LoopState:
    """Where the training loop is, in plain data."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the epoch after that (non-zero after a mid-epoch stop)
    rows: list[dict[str, float]] = field(default_factory=list)  # history, one row per epoch
    best: float | None = None  # early stopping: best monitored value and epochs since
    best_epoch: int = 0
    wait: int = 0
    stopped_early: bool = False
    plateau_best: float | None = None  # reduce-on-plateau
    plateau_wait: int = 0


def _groups(model: Any) -> dict[str, list[Any]]:
    return {
        "model": list(model.variables),
        "optimizer": list(model.optimizer.variables),
        "metrics": list(model.metrics_variables),
    }


def copy_state(state: LoopState) -> LoopState:
    """A copy of the loop's state that the loop's later epochs do not change: the history's
    rows are never changed once appended, so copying the list is enough (a deep copy of a
    long history costs milliseconds every epoch)."""
    return replace(state, rows=list(state.rows))


def _values(variables: list[Any]) -> list[np.ndarray]:
    """Copies of the variables' values. On JAX ``np.array(v.value)`` is the same copy as
    ``np.array(v.numpy())`` at a quarter of its cost (one conversion, not two); a copy it
    must be, as the next training step may reuse the buffer (Keras donates the state)."""
    from keras import backend

    if backend.backend() == "jax":
        return [np.array(v.value) for v in variables]
    return [np.array(v.numpy()) for v in variables]


def snapshot(model: Any, best_weights: list[np.ndarray] | None,
             metrics: list[np.ndarray] | None) -> dict[str, Any]:
    """A checkpoint's arrays, copied now, so that training can go on while write() saves them.

    metrics: the metric accumulators of an epoch stopped half-way, taken when it stopped
    (Keras's validation pass resets and reuses the same variables afterwards)."""
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for group, variables in _groups(model).items():
        values = _values(variables) if group != "metrics" else metrics
        if values is None:
            continue
        names[group] = [v.path for v in variables]
        for i, value in enumerate(values):
            arrays[f"{group}/{i}"] = value
    for i, w in enumerate(best_weights or []):
        arrays[f"best/{i}"] = w
    return {"arrays": arrays, "names": names, "best": len(best_weights or [])}


def write(path: Path, snap: dict[str, Any], state: LoopState) -> None:
    """Write a snapshot and the loop's state (a copy_state, as this runs on another thread)."""
    meta = {"state": asdict(state), "names": snap["names"], "best": snap["best"]}
    arrays = {**snap["arrays"], "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}

    def out(fh: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fh.write(buf.getvalue())

    atomic_write(path, out)


@dataclass
class Checkpoint:
    state: LoopState
    arrays: dict[str, np.ndarray]
    names: dict[str, list[str]]
    n_best: int

    def best_weights(self) -> list[np.ndarray] | None:
        return [self.arrays[f"best/{i}"] for i in range(self.n_best)] if self.n_best else None


def load(path: Path) -> Checkpoint:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path.parent}: no checkpoint to resume from (it was stopped before "
                         "the first one was written); train it again instead") from None
    except OSError as exc:
        raise UsageError(f"{path}: the checkpoint is unreadable ({exc.strerror or exc})") \
            from None
    return parse(data, str(path))


def parse(data: bytes, name: str) -> Checkpoint:
    """A checkpoint from the bytes of its file (the chief sends them to the other workers)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{name}: the checkpoint is unreadable ({exc})") from None
    return Checkpoint(LoopState(**meta["state"]), arrays, meta["names"], meta["best"])


def _structural(path: str) -> str:
    """A variable's path without Keras's per-process counters: "random_flip_3/seed_generator_7"
    -> "random_flip/seed_generator", "adam/dense_12_kernel_momentum" -> "adam/dense_kernel_
    momentum". A layer or seed generator the config does not name is numbered by how many were
    made before it in the process, so a resume in another process (or in a sweep worker that
    trained other trials first) numbers it differently. Shapes are compared as well."""
    return re.sub(r"_\d+(?=[_/]|$)", "", path)


def restore(model: Any, ckpt: Checkpoint) -> None:
    """Put the model's and optimizer's variables back; they must be built the same way.

    Metric accumulators are not restored here: Keras builds and resets them inside fit, so the
    loop adds them back after the first step of the resumed epoch."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for group, variables in _groups(model).items():
        if group == "metrics":
            continue
        saved = ckpt.names[group]
        if ([_structural(v.path) for v in variables] != [_structural(p) for p in saved]
                or any(tuple(v.shape) != ckpt.arrays[f"{group}/{i}"].shape
                       for i, v in enumerate(variables))):
            raise UsageError(f"the checkpoint's {group} variables do not match this model; "
                             "was the run's config or nntrain's version changed?")
        for i, v in enumerate(variables):
            v.assign(ckpt.arrays[f"{group}/{i}"])
