"""What the training rows looked like, per input column: their mean, minimum and maximum, and
for a regressor the range of its targets. Training records it in the run (``baseline.json``) so
that ``nntrain explain`` measures every attribution from the same baseline row, whatever rows it
is later asked to explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BASELINE = "baseline.json"
# The baseline rows explain can start from: the training rows' mean (the default), their
# per-column minimum, or all zeros (the only one a bare .keras file without a run can use).
BASELINE_KINDS = ("mean", "min", "zeros")


@dataclass(frozen=True)
class TrainingRows:
    """Per-column statistics of a run's training rows (after missing values were handled)."""

    features: list[str]
    mean: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    # The smallest and largest training target of a regressor: the scale explain's
    # completeness check measures its 1% against. None for classifiers.
    target_range: tuple[float, float] | None = None

    def baseline(self, kind: str) -> np.ndarray:
        """The baseline row of one of BASELINE_KINDS, as float32."""
        row = {"mean": self.mean, "min": self.minimum,
               "zeros": np.zeros_like(self.mean)}[kind]
        return row.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"features": self.features, "mean": self.mean.tolist(),
                               "min": self.minimum.tolist(), "max": self.maximum.tolist()}
        if self.target_range is not None:
            doc["target_range"] = list(self.target_range)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "TrainingRows":
        """Read back what to_json wrote; KeyError or ValueError when it is not that."""
        target = doc.get("target_range")
        return cls(list(doc["features"]), np.asarray(doc["mean"], np.float64),
                   np.asarray(doc["min"], np.float64), np.asarray(doc["max"], np.float64),
                   None if target is None else (float(target[0]), float(target[1])))


def training_rows(ds: Any, task: str) -> TrainingRows | None:
    """The statistics of a Dataset's training rows; None when there are none to take (rows
    that are not a table of numbers)."""
    if ds.streamed:
        # The streaming pre-pass gathered them already (data/stream.py), over finite values.
        stats = getattr(ds.x_train, "stats", None)
        if stats is None:
            return None
        mean, low, high = stats
    else:
        x = np.asarray(ds.x_train, dtype=np.float64)
        if x.ndim != 2 or not len(x):
            return None
        finite = np.isfinite(x)
        count = finite.sum(axis=0)
        mean = np.where(finite, x, 0.0).sum(axis=0) / np.maximum(count, 1)
        low = np.where(finite, x, np.inf).min(axis=0)
        high = np.where(finite, x, -np.inf).max(axis=0)
    target_range = None
    if task == "regression":
        y = np.asarray(ds.all_targets(), dtype=np.float64)
        y = y[np.isfinite(y)]
        if y.size:
            target_range = (float(y.min()), float(y.max()))
    # A column without a single finite value cannot occur after the missing-value policy;
    # should one slip through, 0 keeps the JSON valid.
    mean, low, high = (np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                       for a in (mean, low, high))
    return TrainingRows(list(ds.feature_names), mean, low, high, target_range)
