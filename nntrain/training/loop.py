"""The training loop, built for resuming bit for bit.

Keras's ``fit`` shuffles with TensorFlow's global RNG, so after a restart nobody can say which
batches an epoch had left. Here every epoch goes over the rows in an order that is a pure
function of (seed, epoch), so a run can stop after any step and continue at the next one with
the same batches. The whole run is one ``fit`` call over a tf.data pipeline that yields those
orders (a ``fit`` per epoch costs its set-up every epoch). Early stopping and reduce-on-plateau
live here too, as plain state that goes into the checkpoint (Keras's callbacks reset theirs on
every ``fit`` call, and a resumed run is a new call).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nntrain import registry
from nntrain.training.checkpoint import Checkpoint, LoopState
from nntrain.config.schema import TrainingConfig
from nntrain.data.dataset import Dataset
from nntrain.tf import import_keras

EpochCallback = Callable[[int, int, dict[str, float], float], None]
BatchCallback = Callable[[int, int, dict[str, float]], None]
# save(state, best weights, metric accumulators of a half-done epoch)
SaveCallback = Callable[[LoopState, "list[np.ndarray] | None", "list[np.ndarray] | None"], None]


class StopRequest:
    """Set from a signal handler; the loop stops after the step that is running."""

    def __init__(self) -> None:
        self.signum: int | None = None
        # finish(): end after the epoch that is running, as early stopping does (the run is
        # finished and written whole); a sweep's pruner stops hopeless trials this way.
        self.finishing = False

    def request(self, signum: int) -> None:
        self.signum = signum

    def finish(self) -> None:
        self.finishing = True

    def __bool__(self) -> bool:
        return self.signum is not None


@dataclass
class LoopResult:
    state: LoopState
    seconds: float
    interrupted: int | None = None  # the signal number
    diverged: tuple[int, str, float] | None = None  # (epoch, quantity, value)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def epoch_order(rows: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The row order of one epoch: the same for the same (seed, epoch), on any machine."""
    if not shuffle:
        return np.arange(rows)
    return np.random.RandomState([seed & 0xFFFFFFFF, epoch]).permutation(rows)


def epoch_inputs(ds: Dataset, cfg: TrainingConfig, epoch: int, step: int) -> dict[str, Any]:
    """model.fit's data for one epoch from batch ``step`` on, in epoch_order's row order.
    Streamed rows (data.stream) are shuffled by tf.data instead, seeded by (seed, epoch)."""
    if ds.streamed:
        return ds.inputs("train", cfg.batch_size, shuffle=cfg.shuffle,
                         seed=(cfg.seed & 0xFFFFFFFF) * 1_000_003 + epoch, skip=step)
    order = epoch_order(len(ds.x_train), cfg.seed, epoch, cfg.shuffle)[step * cfg.batch_size:]
    return {"x": ds.x_train[order], "y": ds.y_train[order], "batch_size": cfg.batch_size}


def _improved(monitor: str, value: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    if registry.bigger_is_better(monitor):
        return value > best + min_delta
    return value < best - min_delta


def learning_rate(model: Any) -> float | None:
    """The optimizer's current learning rate (schedules included), if the model has one."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return float(np.asarray(optimizer.learning_rate))


def loss_first(logs: dict[str, float]) -> dict[str, float]:
    """loss, metrics, then val_loss, val_metrics: the order people read them in."""
    return dict(sorted(logs.items(), key=lambda kv: (kv[0].startswith("val_"),
                                                     kv[0] not in ("loss", "val_loss"))))


def epochs_dataset(ds: Dataset, cfg: TrainingConfig, epoch_of: Callable[[], int]) -> Any:
    """The training rows as one tf.data dataset that model.fit iterates once per epoch, each
    time in epoch_order for the epoch ``epoch_of()`` names (set when the epoch begins).

    This lets a whole run be one ``fit`` call: Keras sets up its data adapter and iterators
    once instead of per epoch (about 30 ms each), and the next batches are gathered in the
    background while the current ones train. The batches are the same as epoch_inputs's."""
    import tensorflow as tf

    rows, size = len(ds.x_train), cfg.batch_size
    full = rows // size
    with tf.device("/CPU:0"):  # tf.data gathers on the CPU; a GPU copy would only be moved back
        x, y = tf.constant(ds.x_train), tf.constant(ds.y_train)

    def order() -> np.ndarray:
        return epoch_order(rows, cfg.seed, epoch_of(), cfg.shuffle).astype(np.int64)

    def batches(_: Any) -> Any:
        perm = tf.numpy_function(order, [], tf.int64, stateful=True)
        perm.set_shape([rows])
        index = tf.data.Dataset.from_tensor_slices(tf.reshape(perm[:full * size], [full, size]))
        if rows % size:
            index = index.concatenate(tf.data.Dataset.from_tensors(perm[full * size:]))
        return index

    return (tf.data.Dataset.range(1).flat_map(batches)
            .map(lambda i: (tf.gather(x, i), tf.gather(y, i)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(steps_per_epoch(rows, size)))
            .prefetch(tf.data.AUTOTUNE))


def epochs_sequence(ds: Dataset, cfg: TrainingConfig, epoch_of: Callable[[], int]) -> Any:
    """epochs_dataset's batches as a keras.utils.PyDataset of numpy arrays, for the other
    backends: in-memory rows then need no TensorFlow (importing it costs seconds of start-up,
    and tf.data would hand JAX a TensorFlow tensor per batch to convert). Keras asks for the
    batches one by one in this thread (one worker), so ``epoch_of()`` names the epoch that
    is training."""
    keras = import_keras()
    rows, size = len(ds.x_train), cfg.batch_size

    class Batches(keras.utils.PyDataset):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.epoch, self.order = -1, np.arange(rows)

        def __len__(self) -> int:
            return steps_per_epoch(rows, size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            if epoch_of() != self.epoch:
                self.epoch = epoch_of()
                self.order = epoch_order(rows, cfg.seed, self.epoch, cfg.shuffle)
            pick = self.order[index * size:(index + 1) * size]
            return ds.x_train[pick], ds.y_train[pick]

    return Batches()


def run_loop(model: Any, ds: Dataset, cfg: TrainingConfig, *, state: LoopState,
             checkpoint: Checkpoint | None, save: SaveCallback, monitors: dict[str, str],
             stop: StopRequest, on_epoch: EpochCallback | None = None,
             on_batch: BatchCallback | None = None, one_fit: bool = True,
             class_weight: dict[int, float] | None = None) -> LoopResult:
    """Train from ``state`` to cfg.epochs; the model is compiled and restored already.

    The rest of an epoch stopped half-way is one ``fit`` over its remaining batches. The
    epochs after it are one ``fit`` over epochs_dataset, or with ``one_fit`` false (streamed
    rows, a distribution strategy) one ``fit`` per epoch. Either way the per-epoch work
    (history, early stopping, plateau, checkpoint) happens in the callback's on_epoch_end."""
    keras = import_keras()
    rows = len(ds.x_train)
    per_epoch = steps_per_epoch(rows, cfg.batch_size)
    validation = ((ds.inputs("validation", cfg.batch_size)["x"] if ds.streamed
                   else (ds.x_val, ds.y_val)) if len(ds.x_val) else None)
    es = cfg.early_stopping
    plateau = cfg.lr_schedule if cfg.lr_schedule and cfg.lr_schedule.type == "reduce_on_plateau" \
        else None
    t0 = time.perf_counter()
    # A checkpoint taken mid-epoch holds that epoch's metric accumulators. They are put back at
    # the start of the resumed epoch, after Keras resets its metrics, so the epoch's averages
    # sum the same numbers in the same order as a run that never stopped. Keras builds its
    # compiled metrics lazily; evaluating one row builds them without touching weights,
    # optimizer or random state.
    pending = checkpoint if checkpoint is not None and state.step else None
    if pending is not None:
        # Streamed rows (data.stream, pictures) cannot be sliced: their first batch of one row.
        one = ({"x": ds.inputs("train", 1)["x"].take(1)} if ds.streamed
               else {"x": ds.x_train[:1], "y": ds.y_train[:1]})
        model.evaluate(**one, verbose=0)

    class Hook(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = state.epoch
            self.started = t0
            self.best_weights = checkpoint.best_weights() if checkpoint else None
            self.result: LoopResult | None = None  # set when the run ends before cfg.epochs
            self.nan = False
            self.metrics: list[np.ndarray] | None = None  # taken when a signal stops the epoch

        def finish(self, **outcome: Any) -> None:
            self.result = LoopResult(state, time.perf_counter() - t0, **outcome)
            self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            nonlocal pending
            self.epoch, self.started = epoch, time.perf_counter()
            if pending is not None:
                for i, v in enumerate(self.model.metrics_variables):
                    v.assign(pending.arrays[f"metrics/{i}"])
                pending = None

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            # self._model, not self.model: on JAX, self.model copies the training state back
            # into the model's variables, which only a stop needs.
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.nan = True
                self._model.stop_training = True
            if stop and not self._model.stop_training:
                self._model.stop_training = True
                self.metrics = [np.asarray(v.numpy()) for v in self.model.metrics_variables]
            if on_batch is not None:
                on_batch(batch + 1, per_epoch, logs or {})

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = loss_first({k: float(v) for k, v in (logs or {}).items()})
            if self.nan or not all(math.isfinite(v) for v in logs.values()):
                bad = next((k for k, v in logs.items() if not math.isfinite(v)), "loss")
                state.rows.append({"epoch": epoch + 1, **logs})
                self.finish(diverged=(epoch + 1, bad, logs.get(bad, float("nan"))))
                if on_epoch is not None:  # its line (and --jsonl's, with nulls) shows where
                    on_epoch(epoch + 1, cfg.epochs, logs, time.perf_counter() - self.started)
                return
            done = int(self.model.optimizer.iterations.numpy()) - epoch * per_epoch
            if done < per_epoch:  # stopped by a signal in the middle of the epoch
                state.step = done
                save(state, self.best_weights, self.metrics)
                self.finish(interrupted=stop.signum)
                return
            state.rows.append({"epoch": epoch + 1, **logs})
            state.epoch, state.step = epoch + 1, 0
            self.after_epoch(epoch + 1, logs)
            save(state, self.best_weights, None)
            if on_epoch is not None:
                on_epoch(epoch + 1, cfg.epochs, logs, time.perf_counter() - self.started)
            if stop.finishing:
                state.stopped_early = True
            if state.stopped_early:
                self.model.stop_training = True
            elif stop and state.epoch < cfg.epochs:
                # The signal came after the epoch's last step (after the last epoch's, the
                # run is simply done).
                self.finish(interrupted=stop.signum)

        def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
            """Early stopping and reduce-on-plateau, as plain state for the checkpoint
            (Keras's callbacks would reset theirs on every fit call)."""
            if es is not None:
                value = logs[monitors["early_stopping"]]
                if _improved(monitors["early_stopping"], value, state.best, es.min_delta):
                    state.best, state.best_epoch, state.wait = value, epoch, 0
                    if es.restore_best_weights:
                        self.best_weights = self.model.get_weights()
                else:
                    state.wait += 1
                    state.stopped_early = state.wait >= es.patience
            if plateau is not None:
                value = logs[monitors["lr_schedule"]]
                if _improved(monitors["lr_schedule"], value, state.plateau_best, 0.0):
                    state.plateau_best, state.plateau_wait = value, 0
                else:
                    state.plateau_wait += 1
                    if state.plateau_wait >= plateau.patience:
                        lr = float(self.model.optimizer.learning_rate.numpy())
                        self.model.optimizer.learning_rate.assign(
                            max(lr * plateau.factor, plateau.min_lr))
                        state.plateau_wait = 0

    hook = Hook()
    fit = dict(validation_data=validation, callbacks=[hook], shuffle=False, verbose=0,
               class_weight=class_weight)
    if validation is not None and not ds.streamed:  # else fit's default is 32 for datasets
        fit["validation_batch_size"] = cfg.batch_size
    if stop:
        return LoopResult(state, 0.0, interrupted=stop.signum)
    if state.step and state.epoch < cfg.epochs and not state.stopped_early:
        # The rest of the epoch a checkpoint stopped in.
        model.fit(**epoch_inputs(ds, cfg, state.epoch, state.step), epochs=state.epoch + 1,
                  initial_epoch=state.epoch, **fit)
    if one_fit and not ds.streamed and hook.result is None and not state.stopped_early \
            and state.epoch < cfg.epochs:
        if keras.backend.backend() == "tensorflow":
            data = {"x": epochs_dataset(ds, cfg, lambda: hook.epoch)}
        else:
            data = {"x": epochs_sequence(ds, cfg, lambda: hook.epoch)}
        model.fit(**data, epochs=cfg.epochs, initial_epoch=state.epoch, **fit)
    while hook.result is None and not state.stopped_early and state.epoch < cfg.epochs:
        model.fit(**epoch_inputs(ds, cfg, state.epoch, 0), epochs=state.epoch + 1,
                  initial_epoch=state.epoch, **fit)
    if hook.result is not None:
        return hook.result
    if es is not None and es.restore_best_weights and hook.best_weights is not None:
        model.set_weights(hook.best_weights)
    return LoopResult(state, time.perf_counter() - t0)
