"""Missing values and feature normalization, both learned from the training rows only.

Normalization ends up inside the model (``Normalization.layer``: a plain Keras layer, so the
saved model applied to raw inputs gives the right answer without nntrain). Filling missing
values cannot be written with plain Keras layers, so the fill values are recorded in the run
directory (``preprocessing.json``) for ``eval`` and ``predict`` to apply (``fill_missing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nntrain.errors import DataError

PREPROCESSING = "preprocessing.json"


def policy_name(missing: Any) -> str:
    """'error', 'drop', 'mean' or 'fill', from the config's data.missing."""
    return missing if isinstance(missing, str) else "fill"


@dataclass(frozen=True)
class Normalization:
    """Per-feature (x - shift) / scale, as the mean and variance of keras.layers.Normalization.

    standard: the training mean and variance. minmax: shift is the minimum and the variance is
    the squared range, which maps the training rows onto [0, 1]. A constant column gets
    variance 1 (it is only shifted) rather than a division by zero.
    """

    kind: str  # "standard" or "minmax"
    mean: np.ndarray  # float64, one per feature (the last axis of x)
    variance: np.ndarray

    def layer(self, keras: Any) -> Any:
        return keras.layers.Normalization(mean=self.mean.tolist(), variance=self.variance.tolist(),
                                          name=f"normalize_{self.kind}")

    def to_json(self) -> dict[str, Any]:
        key = "minimum" if self.kind == "minmax" else "mean"
        spread = (np.sqrt(self.variance) if self.kind == "minmax" else self.variance).tolist()
        return {"kind": self.kind, key: self.mean.tolist(),
                "range" if self.kind == "minmax" else "variance": spread}


def normalization(kind: str, count: int, mean: np.ndarray, m2: np.ndarray, low: np.ndarray,
                  high: np.ndarray) -> Normalization | None:
    """From training-row statistics: row count, mean, sum of squared deviations, min, max."""
    if kind == "none":
        return None
    if kind == "standard":
        shift, variance = mean, m2 / max(count, 1)
    else:
        shift, variance = low, (high - low) ** 2
    variance = np.where(variance > 0, variance, 1.0)
    return Normalization(kind, np.asarray(shift, np.float64), np.asarray(variance, np.float64))


def fit_normalization(kind: str, x_train: np.ndarray) -> Normalization | None:
    """Statistics of the (filled-in) training rows, per feature on x's last axis."""
    if kind == "none":
        return None
    flat = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    return normalization(kind, len(flat), mean, ((flat - mean) ** 2).sum(axis=0),
                         flat.min(axis=0), flat.max(axis=0))


@dataclass
class Preprocessing:
    """What was learned from the training rows, recorded for eval and predict."""

    missing: str = "error"  # error, drop, fill or mean
    fill: np.ndarray | None = None  # per feature, for fill and mean
    normalization: Normalization | None = None
    dropped: int = 0  # rows dropped for missing values (all files)

    @property
    def recorded(self) -> bool:
        """Whether there is anything to write to preprocessing.json."""
        return self.missing != "error" or self.normalization is not None

    def fill_missing(self, x: np.ndarray) -> np.ndarray:
        """NaN and inf replaced by the recorded fill values (a copy); eval and predict call
        this on raw inputs. Without fill values, missing inputs are left for the caller to
        refuse: the run never trained on them."""
        if self.fill is None:
            return x
        bad = ~np.isfinite(x)
        if not bad.any():
            return x
        return np.where(bad, np.broadcast_to(self.fill.astype(x.dtype), x.shape), x)

    def to_json(self, feature_names: list[str]) -> dict[str, Any]:
        missing: dict[str, Any] = {"policy": self.missing}
        if self.fill is not None:
            missing["fill"] = self.fill.tolist()
        if self.dropped:
            missing["dropped_rows"] = self.dropped
        return {"features": feature_names, "missing": missing,
                "normalize": self.normalization.to_json() if self.normalization else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Preprocessing":
        """Read back what to_json wrote (the normalization lives in the model, not here)."""
        missing = data.get("missing") or {}
        fill = missing.get("fill")
        return cls(missing.get("policy", "error"),
                   None if fill is None else np.asarray(fill, dtype=np.float64),
                   None, int(missing.get("dropped_rows", 0)))


def fill_values(policy: str, value: float | None, x_train: np.ndarray,
                feature_names: list[str], source: str) -> np.ndarray | None:
    """Per-feature fill values: the configured one, or the training rows' mean."""
    width = x_train.shape[-1]
    if policy == "fill":
        return np.full(width, value, dtype=np.float64)
    if policy != "mean":
        return None
    flat = x_train.reshape(-1, width).astype(np.float64)
    ok = np.isfinite(flat)
    counts = ok.sum(axis=0)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        column = feature_names[empty[0]] if len(feature_names) == width else str(empty[0])
        raise DataError.in_file(source, f"column '{column}' has no values in the training "
                                "rows, so data.missing: mean has nothing to take the mean of",
                                hint="drop the column from data.features, or use "
                                "data.missing: {fill: VALUE}")
    return np.where(ok, flat, 0.0).sum(axis=0) / counts
