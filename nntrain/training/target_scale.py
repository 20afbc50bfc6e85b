"""data.target_normalize: standard — regression on a standardized target.

The model ends in a fixed ``keras.layers.Rescaling(scale=std, offset=mean)``: the layers before
it learn (y - mean) / std of the training rows, and the model's outputs are in the target's own
units, during training (loss, metrics, early stopping, history) and after (the saved model,
``eval``, ``predict``, plain ``keras.models.load_model``). The loss is computed in those units,
so its gradients are a constant multiple of those of the loss on the standardized target (std²
for mse, std for mae); adaptive
optimizers (adam, rmsprop, adagrad, ...) divide that factor out, which makes this the same
training as on the standardized target for them (sgd's learning rate would have to be divided
by std²).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TargetScale:
    mean: float
    std: float

    def layer(self, keras: Any) -> Any:
        """x * std + mean: a plain Keras layer, computed with the backend's own ops."""
        return keras.layers.Rescaling(scale=self.std, offset=self.mean, name="target_unscale")

    def to_json(self) -> dict[str, Any]:
        return {"kind": "standard", "mean": self.mean, "std": self.std}


def fit_target_scale(kind: str, y_train: np.ndarray) -> TargetScale | None:
    """The training rows' mean and standard deviation (1 for a constant target)."""
    if kind == "none" or not len(y_train):
        return None
    y = np.asarray(y_train, dtype=np.float64)
    std = float(y.std())
    return TargetScale(float(y.mean()), std if std > 0 else 1.0)
