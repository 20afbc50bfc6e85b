"""training.class_weight: how much each class's rows weigh in the loss.

Keras applies the weights (``fit(class_weight=...)``, keyed by class index); this module turns
the config's ``balanced`` or ``{label: weight}`` into that mapping. ``balanced`` counts the
training rows only, as scikit-learn's ``class_weight="balanced"``: n_rows / (n_classes *
count), so every class contributes the same total weight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from nntrain.errors import ConfigError

if TYPE_CHECKING:
    from nntrain.targets import Targets

WHERE = ("training", "class_weight")


def resolve_class_weight(spec: Any, *, targets: Targets, y_train: Any,
                         streamed: bool) -> dict[int, float] | None:
    """The config's class_weight as {class index: weight}; None when not set."""
    if spec is None:
        return None
    if not targets.is_classifier:
        raise ConfigError.at(WHERE, "class weights need a classification loss; this run is a "
                             "regression (remove training.class_weight)")
    names = targets.classes
    if spec == "balanced":
        if streamed:
            raise ConfigError.at(WHERE, "balanced needs the training rows' label counts, which "
                                 "data.stream does not hold; give {label: weight} instead")
        counts = np.bincount(targets.class_indices(y_train), minlength=len(names))
        present = np.flatnonzero(counts)
        total = counts.sum()
        return {int(i): float(total / (len(present) * counts[i])) for i in present}
    out: dict[int, float] = {}
    for key, weight in spec.items():
        if str(key) not in names:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise ConfigError.at(WHERE + (key,), f"no class '{key}' in the data; its labels "
                                 f"are {shown}", key=True)
        out[names.index(str(key))] = float(weight)
    return out


def by_label(weights: dict[int, float], targets: Targets) -> dict[str, float]:
    """{label: weight} in the user's labels, for the manifest."""
    return {targets.classes[i]: round(w, 6) for i, w in sorted(weights.items())}
