"""What the targets mean: the one contract between training a run and using it.

Training calls ``fit_targets`` once: it checks the labels, the output layer and the loss
against each other, encodes the dataset's targets for the loss, and returns a frozen
``Targets``; the run writes its labels into ``labels.json``. eval, predict and export build the
same ``Targets`` back with ``Targets.read`` and use it to encode the targets of new rows
(``encode``) and to turn model outputs into labels and probabilities (``decode``).

The task comes from registry metadata of the loss (``registry.loss_task``):

- ``binary``: one output unit, the probability (or hinge score) of class 1; targets 0/1 floats
- ``multiclass``: one unit per class; targets integer class indices
- ``onehot``: one unit per class; targets one-hot rows
- ``regression``: the outputs are the values
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nntrain import registry
from nntrain.errors import ConfigError, DataError
from nntrain.runs.rundir import LABELS, read_json

if TYPE_CHECKING:
    from nntrain.config.schema import RunConfig
    from nntrain.data.dataset import Dataset

Label = str | int


@dataclass(frozen=True)
class Targets:
    """The task, the classes and their labels, and how outputs are read."""

    task: str  # binary, multiclass, onehot or regression
    n_classes: int | None = None  # output classes (2 for binary); None for regression
    # labels.json: the user's label of each class index, text or the numbers (such as -1 and
    # 1) that were mapped to indices; None when the labels are the indices themselves.
    labels: tuple[Label, ...] | None = None
    score: bool = False  # outputs are scores with a margin at 0 (hinge losses), not probabilities
    from_logits: bool = False  # outputs are logits, to pass through sigmoid/softmax

    @classmethod
    def of_loss(cls, loss: str, *, from_logits: bool = False, n_classes: int | None = None,
                labels: list[Label] | tuple[Label, ...] | None = None) -> Targets:
        """The contract of a model trained with ``loss`` (a registry name)."""
        task = registry.loss_task(loss)
        if task == "regression":
            n_classes = None
        elif task == "binary":
            n_classes = 2
        return cls(task, n_classes, tuple(labels) if labels else None,
                   registry.loss_outputs_scores(loss), bool(from_logits))

    @classmethod
    def read(cls, run_dir: Path | None, loss: str, *, from_logits: bool, n_outputs: int,
             labels: list[Label] | None = None) -> Targets:
        """A trained model's contract: the loss's task, the model's outputs, and the labels
        that ``run_dir/labels.json`` recorded (or ``labels`` when given)."""
        if labels is None and run_dir is not None and (run_dir / LABELS).is_file():
            try:
                labels = read_json(run_dir / LABELS)
            except (OSError, ValueError) as exc:
                raise DataError.in_file(str(run_dir / LABELS), f"cannot read it: {exc}") from None
        return cls.of_loss(loss, from_logits=from_logits, n_classes=n_outputs, labels=labels)

    def to_json(self) -> list[Label] | None:
        """What labels.json holds; None: the run writes no labels.json."""
        return list(self.labels) if self.labels else None

    # --- the classes ---------------------------------------------------------------------

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def probabilistic(self) -> bool:
        """Whether the outputs are (or become, through sigmoid/softmax) class probabilities."""
        return self.is_classifier and not self.score

    @property
    def class_labels(self) -> list[Label]:
        """The user's label of each class index: text labels, mapped numbers, or the index
        itself. Output units beyond the labels, which training allows, get their index, as
        text after text labels, and after mapped numbers the numbers above the largest (so
        that no two classes share a name)."""
        n = self.n_classes or 0
        labels: list[Label] = list(self.labels or [])
        if not labels:
            return list(range(n))
        if isinstance(labels[0], str):
            return labels + [str(i) for i in range(len(labels), n)]
        top = max(int(v) for v in labels)
        return labels + [top + k for k in range(1, n - len(labels) + 1)]

    @property
    def classes(self) -> list[str]:
        """Class names in index order, as text."""
        return [str(c) for c in self.class_labels]

    @property
    def numeric_labels(self) -> list[int] | None:
        """The labels when they are numbers (such as -1 and 1) mapped to class indices."""
        if self.labels and not isinstance(self.labels[0], str):
            return [int(v) for v in self.labels]
        return None

    # --- encoding and decoding -----------------------------------------------------------

    def encode(self, y: np.ndarray, file_labels: list[str] | None = None, *,
               name: str = "", column: str = "") -> np.ndarray:
        """A file's targets -> the y the loss expects, through the run's label mapping.
        ``file_labels``: the file's text labels when ``y`` holds indices into them; ``name``
        and ``column`` say where the targets came from, for the errors."""
        if not self.is_classifier:
            if file_labels is not None:
                raise DataError.in_file(name, f"{column}the target holds text "
                                        f"('{file_labels[0]}'), but the model is a regressor: "
                                        "it needs numbers")
            return y.astype(np.float32)
        classes = self.classes
        if file_labels is not None:
            if self.numeric_labels:
                text = next((label for label in file_labels if not _is_number(label)),
                            file_labels[0])
                raise DataError.in_file(name, f"{column}the labels are text ('{text}'), but the "
                                        "run was trained on numeric labels "
                                        f"({_listing(classes)})")
            # The file's text labels, by name, onto the class indices the run trained with.
            index = {label: i for i, label in enumerate(self.labels or [])}
            unknown = [label for label in file_labels if label not in index]
            if unknown:
                rows = int(np.isin(y, [file_labels.index(u) for u in unknown]).sum())
                hint = (None if self.labels else "a bare .keras file has no label names: use "
                        "the run directory, whose labels.json maps them")
                raise DataError.in_file(name, f"{column}unknown label '{unknown[0]}' "
                                        f"({rows} row{'s' if rows != 1 else ''}); the model "
                                        f"knows {_listing(classes)}", hint=hint)
            y = np.asarray([index[label] for label in file_labels], dtype=np.int64)[
                y.astype(np.int64)]
        elif self.numeric_labels:
            y = _index_numbers(self.numeric_labels, y, name, column)
        elif self.labels:
            raise DataError.in_file(name, f"{column}the labels are numbers, but the run was "
                                    f"trained on text labels ({_listing(classes)})")
        else:
            bad = (y != np.round(y)) | (y < 0) | (y >= len(classes))
            if bad.any():
                raise DataError.in_file(name, f"{column}{y[bad][0]:g} is not a class of the "
                                        f"model (expected {_listing(classes)})")
            y = y.astype(np.int64)
        if self.task == "onehot":
            return np.eye(len(classes), dtype=np.float32)[y]
        return y.astype(np.float32) if self.task == "binary" else y

    def decode(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw classifier outputs -> (predicted class index, per-class probability or score)."""
        if self.task == "binary":
            score = outputs[:, 0].astype(np.float64)
            if self.score:
                # Hinge losses train a margin around 0; there is no probability to report.
                return (score > 0).astype(np.int64), np.stack([-score, score], axis=1)
            p = 1 / (1 + np.exp(-score)) if self.from_logits else score
            return (p > 0.5).astype(np.int64), np.stack([1 - p, p], axis=1)
        scores = outputs.astype(np.float64)
        if self.from_logits:
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = e / e.sum(axis=1, keepdims=True)
        return scores.argmax(axis=1), scores

    def class_indices(self, y: np.ndarray) -> np.ndarray:
        """Encoded targets (0/1 floats, indices or one-hot rows) -> class indices."""
        if self.task == "onehot":
            return np.asarray(y).argmax(axis=1)
        return np.asarray(y).astype(np.int64).reshape(-1)


# --- training: the contract from the config and the data ---------------------------------

def output_layer(config: RunConfig) -> tuple[int | None, int | None, str | None]:
    """(index, units, activation name) of the last layer that has units."""
    for i in range(len(config.model.layers) - 1, -1, -1):
        args = config.model.layers[i].args
        if "units" in args:
            act = args.get("activation")
            act = act.get("name") if isinstance(act, dict) else act
            return i, args["units"], act
    return None, None, None


def fit_targets(config: RunConfig, ds: Dataset) -> Targets:
    """Check that labels, output layer and loss fit each other (mismatches are config errors),
    encode the dataset's targets for the loss, and return the contract. Numeric labels that do
    not fit the output are mapped to class indices (Dataset.index_labels). eval recreates a
    run's rows with this too, so they are encoded exactly as in training."""
    loss = config.training.loss.name
    task = registry.loss_task(loss)
    idx, units, act = output_layer(config)
    where = ("model", "layers", idx) if idx is not None else ("model", "layers")
    y_all = ds.all_targets()
    if task == "regression":
        if units is not None and units != 1:
            raise ConfigError.at(where + ("units",), f"{loss} on one target column needs 1 "
                                 f"output unit, got {units}")
        ds.encode_targets(task, None)
        return _targets(config, None, ds)
    if ds.labels is None:
        if not np.all(np.equal(np.mod(y_all, 1), 0)):
            raise ConfigError.at(("training", "loss"), f"{loss} is a classification loss but "
                                 "the target has non-integer values (e.g. "
                                 f"{y_all[np.mod(y_all, 1) != 0][0]:g}); use a regression loss "
                                 "such as mse, or integer class labels")
        ds.index_labels(2 if task == "binary" else units)
    y_all = y_all.astype(np.int64)
    n_classes = len(ds.labels) if ds.labels else int(y_all.max()) + 1 if y_all.size else 2
    if task == "binary":
        if n_classes > 2:
            raise ConfigError.at(("training", "loss"), f"{loss} needs labels 0 and 1, but the "
                                 f"data has {n_classes} classes; use "
                                 f"sparse_categorical_crossentropy with units: {n_classes} and "
                                 "activation: softmax")
        if units is not None and units != 1:
            raise ConfigError.at(where + ("units",), f"{loss} needs 1 output unit (the "
                                 f"probability of class 1), got {units}")
        if act == "softmax":
            raise ConfigError.at(where + ("activation",), "softmax over 1 unit always outputs "
                                 f"1.0; use activation: sigmoid with {loss}")
        n_classes = 2
    else:
        if units is not None and units == 1:
            raise ConfigError.at(where + ("units",), f"1 output unit cannot tell {n_classes} "
                                 f"classes apart with {loss}; use units: {n_classes} and "
                                 "activation: softmax")
        if units is not None and units < n_classes:
            raise ConfigError.at(where + ("units",), f"the labels have {n_classes} classes but "
                                 f"the output layer has {units} units; use units: {n_classes}")
        if units is not None and units > n_classes:
            ds.notes.append(f"the output layer has {units} units but the labels have "
                            f"{n_classes} classes: {units - n_classes} unit"
                            f"{'s' if units - n_classes > 1 else ''} no label uses "
                            f"(model.layers[{idx}].units: {n_classes} fits the data)")
        n_classes = units or n_classes
    ds.encode_targets(task, n_classes)
    return _targets(config, n_classes, ds)


def _targets(config: RunConfig, n_classes: int | None, ds: Dataset) -> Targets:
    loss = config.training.loss
    return Targets.of_loss(loss.name, from_logits=bool(loss.args.get("from_logits")),
                           n_classes=n_classes, labels=ds.labels)


# --- helpers -----------------------------------------------------------------------------

def _index_numbers(labels: list[int], y: np.ndarray, name: str, column: str) -> np.ndarray:
    """Numeric targets -> the class indices of the run's numeric labels (labels.json)."""
    known = np.asarray(labels, dtype=np.float64)
    at = np.minimum(np.searchsorted(known, y), len(known) - 1)
    bad = known[at] != y
    if bad.any():
        value = float(y[bad][0])
        rows = int((y == value).sum())
        shown = str(int(value)) if value.is_integer() else f"{value:g}"
        raise DataError.in_file(name, f"{column}unknown label {shown} ({rows} "
                                f"row{'s' if rows != 1 else ''}); the model knows "
                                f"{_listing([str(label) for label in labels])}")
    return at.astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _listing(classes: list[str], limit: int = 10) -> str:
    shown = ", ".join(classes[:limit])
    return f"{shown}, ... ({len(classes)} classes)" if len(classes) > limit else shown

