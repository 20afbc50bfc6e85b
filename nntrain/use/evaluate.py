"""Score a trained model (``nntrain eval``). No printing: ``evaluate`` returns an Evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.data.dataset import evaluation_batch
from nntrain.data.images import is_picture_source
from nntrain.errors import UsageError
from nntrain.model import build_loss, build_metrics
from nntrain.use.load import (BATCH_ROWS, Trained, forward_pass, load_trained, read_labeled,
                              run_rows, split_batches)


@dataclass
class Evaluation:
    """Metrics of one model on one set of rows."""

    model: str  # the run directory or .keras file
    data: str  # what was scored: "test" (the run's test rows) or the data file
    rows: int
    task: str
    metrics: dict[str, float | None]
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # rows: true, columns: predicted
    per_class: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Metrics at the top level (``jq .accuracy``), then what was scored and the details."""
        doc: dict[str, Any] = {**self.metrics, "model": self.model, "data": self.data,
                               "rows": self.rows, "task": self.task}
        if self.classes:
            doc.update(classes=self.classes, confusion_matrix=self.confusion,
                       per_class=self.per_class)
        return doc


def evaluate(model: str | Path, data: str | None = None, *, target: str | None = None,
             loss: str | None = None, metrics: list[str] | None = None) -> Evaluation:
    """Score a run on its own test rows (recreated as in training), or any model on the rows
    of a CSV file or .npz archive."""
    trained = load_trained(model, loss=loss, metrics=metrics, target=target)
    if data is None:
        ds = run_rows(trained)
        if not len(ds.x_test):
            raise UsageError.in_file(trained.run_dir, "the run has no test rows "
                          "(data.split.test is 0); pass --data FILE to score other data")
        # Exactly what training evaluated (train.evaluate_splits).
        inputs = ds.inputs("test", evaluation_batch(ds.x_test, trained.training.batch_size))
        batches: Any = split_batches(ds, "test")
        what = "test"
    elif is_picture_source(data):  # a folder of class folders
        from nntrain.use.pictures import labeled_pictures

        inputs, batches, what = labeled_pictures(trained, data)
    else:
        x, y, what = read_labeled(trained, data)
        inputs = {"x": x, "y": y, "batch_size": evaluation_batch(x, trained.training.batch_size)}
        batches = ((x[i:i + BATCH_ROWS], y[i:i + BATCH_ROWS])
                   for i in range(0, len(x), BATCH_ROWS))
    scores = _keras_metrics(trained, inputs)
    outputs, y = _outputs(trained, batches)
    result = Evaluation(trained.name, what, len(y), trained.targets.task, scores)
    if trained.targets.is_classifier:
        _add_classification(result, trained, outputs, y)
    else:
        _add_regression(result, outputs, y)
    result.metrics = {k: _finite(v) for k, v in result.metrics.items()}
    return result


def _outputs(trained: Trained, batches: Iterator[tuple[np.ndarray, np.ndarray]],
             forward: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs and targets of every row; the inputs are not kept."""
    forward = forward or forward_pass(trained.model)
    outputs, targets = [], []
    for x, y in batches:
        outputs.append(forward(x))
        targets.append(y)
    if not outputs:
        return np.zeros((0, trained.n_outputs), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(outputs), np.concatenate(targets)


def _keras_metrics(trained: Trained, inputs: dict[str, Any]) -> dict[str, float]:
    """The loss and metrics exactly as training reported them (same objects, same batches)."""
    model = trained.model
    model.compile(loss=build_loss(trained.training), metrics=build_metrics(trained.training))
    res = model.evaluate(**inputs, verbose=0, return_dict=True)
    return {k: float(v) for k, v in sorted(res.items(), key=lambda kv: kv[0] != "loss")}


def _add_classification(result: Evaluation, trained: Trained, outputs: np.ndarray,
                        y: np.ndarray) -> None:
    classes = trained.targets.classes
    predicted, _ = trained.targets.decode(outputs)
    actual = trained.targets.class_indices(y)
    n = len(classes)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (actual, predicted), 1)
    result.classes = classes
    result.confusion = cm.tolist()
    for i, name in enumerate(classes):
        tp, predicted_i, actual_i = int(cm[i, i]), int(cm[:, i].sum()), int(cm[i].sum())
        precision = tp / predicted_i if predicted_i else None
        recall = tp / actual_i if actual_i else None
        # 2·tp / (2·tp + fp + fn): the harmonic mean of the two, defined unless both are.
        f1 = 2 * tp / (predicted_i + actual_i) if predicted_i + actual_i else None
        result.per_class[name] = {"precision": precision, "recall": recall, "f1": f1,
                                  "support": actual_i}
    # Accuracy from the decisions, for runs trained without an accuracy metric.
    result.metrics.setdefault("accuracy", float(np.trace(cm) / max(cm.sum(), 1)))


def per_class(trained: Trained, batches: Iterator[tuple[np.ndarray, np.ndarray]],
              forward: Any = None) -> dict[str, dict[str, float | int | None]]:
    """Precision, recall, F1 and support per class of a classifier on (x, y) batches, as
    ``nntrain eval`` reports them (``forward``: a forward_pass to reuse)."""
    outputs, y = _outputs(trained, batches, forward)
    result = Evaluation(trained.name, "", len(y), trained.targets.task, {})
    _add_classification(result, trained, outputs, y)
    return result.per_class


def _add_regression(result: Evaluation, outputs: np.ndarray, y: np.ndarray) -> None:
    pred = outputs.astype(np.float64).reshape(len(outputs), -1)
    true = np.asarray(y, dtype=np.float64).reshape(len(pred), -1)
    err = pred - true
    total = float(((true - true.mean(axis=0)) ** 2).sum())
    result.metrics.setdefault("mae", float(np.abs(err).mean()))
    result.metrics.setdefault("rmse", float(np.sqrt((err ** 2).mean())))
    # R² is undefined when every target is the same value.
    result.metrics.setdefault("r2", 1 - float((err ** 2).sum()) / total if total > 0 else None)


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity; a diverged metric is reported as null."""
    return value if value is None or math.isfinite(value) else None
