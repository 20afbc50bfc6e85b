"""TensorBoard logs of a run (``training.tensorboard: true``): `tensorboard --logdir runs`.

Keras's TensorBoard callback is not used: it writes the graph and per-batch data nntrain does
not need, and it knows nothing of a resumed run's epochs. Here one writer per split stays open
for the whole run (or the resumed part of it) and gets the same scalars
under the same names as Keras's callback writes (``epoch_loss``, ``epoch_accuracy``, ... in
``train/`` and ``validation/``), so TensorBoard draws training and validation in one chart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nntrain.training.loop import EpochCallback, learning_rate

TENSORBOARD = "tensorboard"  # the folder in the run directory


class TensorBoardLog:
    """An epoch callback that writes the epoch's metrics, then calls ``then``."""

    def __init__(self, directory: Path, model: Any, then: EpochCallback | None = None):
        from nntrain.tf import import_tensorflow

        tf = import_tensorflow()  # tf.summary writes the logs on either Keras backend
        self._tf = tf
        self._model = model
        self._then = then
        self._directory = directory
        self._train = tf.summary.create_file_writer(str(directory / "train"))
        self._validation: Any = None  # created with the first validation metric

    def __call__(self, epoch: int, total: int, logs: dict[str, float], seconds: float) -> None:
        step = epoch - 1  # Keras's callback counts epochs from 0
        with self._train.as_default(step=step):
            for name, value in logs.items():
                if not name.startswith("val_"):
                    self._tf.summary.scalar(f"epoch_{name}", value)
            lr = learning_rate(self._model)
            if lr is not None and "learning_rate" not in logs:
                self._tf.summary.scalar("epoch_learning_rate", lr)
        validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        if validation and self._validation is None:
            self._validation = self._tf.summary.create_file_writer(
                str(self._directory / "validation"))
        if validation:
            with self._validation.as_default(step=step):
                for name, value in validation.items():
                    self._tf.summary.scalar(f"epoch_{name}", value)
        # Flushed every epoch so that a TensorBoard watching the run sees it as it trains.
        for writer in (self._train, self._validation):
            if writer is not None:
                writer.flush()
        if self._then is not None:
            self._then(epoch, total, logs, seconds)

    def close(self) -> None:
        for writer in (self._train, self._validation):
            if writer is not None:
                writer.close()
