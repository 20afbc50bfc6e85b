"""Why a model said what it said (``nntrain explain``).

Integrated gradients (Sundararajan et al., 2017) for every row: the attribution of each raw
input column to the explained output, which sum to f(row) - f(baseline). The gradients are taken
through the whole saved model, its Normalization layer included, so they are with respect to the
columns the user gave. The number of integration steps is doubled, row by row, until that sum
holds within 1% of the output's range. Permutation importance, the other method, is the drop of
the run's first metric when one column is shuffled: global, and independent of gradients.

The model runs through a small function per Keras backend (TensorFlow, JAX); everything that
touches the model's outputs is written in keras.ops. No printing: the CLI writes the text chunks
and renders the Summary.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nntrain import registry
from nntrain.data import tabular
from nntrain.data.baseline import BASELINE, TrainingRows
from nntrain.errors import DataError, UsageError, did_you_mean
from nntrain.runs.rundir import read_json
from nntrain.tf import import_keras
from nntrain.use.load import (BATCH_ROWS, InputRows, Trained, in_batches, load_trained,
                              read_labeled, run_rows, split_batches)


# Completeness: |sum of attributions - (f(row) - f(baseline))| must be within this fraction of
# the output's range. Steps start where smooth small models already pass and double up to the
# bound; a ReLU network's kinks can need a few doublings, more rarely helps.
TOLERANCE = 0.01
START_STEPS = 32
MAX_STEPS = 1024
# Interpolated points per gradient call: big enough that the per-call overhead vanishes, small
# enough that a wide model's activations stay small.
POINTS_PER_CALL = 16384
# Grid points per axis of the plane picture of a two-input model: 80 x 80 x 33 gradients take
# about a second on a small model, and the maps look smooth at the picture's size.
PLANE_GRID = 80
# Permutation importance scores every column `repeats` times on these rows: enough for a
# stable mean, bounded so a large test split does not take minutes.
PERMUTATION_ROWS = 10_000
REPEATS = 5


@dataclass
class Importance:
    """One input column's global importance."""

    feature: str
    value: float  # mean |attribution|, or the mean drop of the metric
    spread: float | None = None  # permutation: standard deviation over the repeats
    # gradients: the mean signed attribution: whether the column pushed the explained output
    # above or below the baseline's on average (near 0 when it pushes both ways)
    mean: float | None = None


@dataclass
class Summary:
    """What the CLI reports on stderr once the rows are done."""

    method: str
    model: str
    data: str  # "test" (the run's test rows) or the data file
    rows: int = 0
    importance: list[Importance] = field(default_factory=list)  # most important first
    baseline: str = ""  # gradients: mean, min or zeros
    explained: str = ""  # gradients: what was explained (the predicted class, a class, value)
    largest_gap: float = 0.0  # gradients: of the output's range, after the last doubling
    rows_beyond: int = 0  # gradients: rows whose gap is still beyond TOLERANCE at MAX_STEPS
    most_steps: int = 0  # gradients: the most steps any row needed
    metric: str = ""  # permutation: the metric whose change is measured
    change: str = ""  # permutation: "drop in accuracy", "rise in mae": worse, either way
    plane_names: list[str] = field(default_factory=list)  # the input columns, in order
    score: float | None = None  # permutation: its value on the rows as they are
    repeats: int = 0


@dataclass
class Plane:
    """Attributions over the plane of a two-input model's inputs (a PLANE_GRID square grid)."""

    g0: np.ndarray
    g1: np.ndarray
    a0: np.ndarray  # attribution of the first input at each grid point
    a1: np.ndarray
    # Classifiers: a field whose contours at ``levels`` are the decision boundary.
    boundary: np.ndarray | None
    levels: list[float]
    baseline: np.ndarray


@dataclass
class Explanation:
    """Text chunks for stdout, and the summary, complete once ``chunks`` is exhausted."""

    chunks: Iterator[str]
    summary: Summary
    # For --plot, once the chunks are done: the attributions over the plane of a two-input
    # model (None for other models and for permutation importance).
    plane: Callable[[], Plane | None] = lambda: None


# --- the model as a function of its raw inputs --------------------------------------------

class ModelFunction:
    """The model's raw outputs, and the explained output with its gradient with respect to the
    raw inputs, on the Keras backend in use."""

    def __init__(self, trained: Trained, model: Any = None):
        keras = import_keras()
        backend = keras.backend.backend()
        value = _explained_output(trained, keras.ops)
        model = trained.model if model is None else model  # a table's: after its encoding
        if backend == "tensorflow":
            self.outputs, self.gradients = _tensorflow_functions(model, value)
        elif backend == "jax":
            self.outputs, self.gradients = _jax_functions(model, value)
        else:
            raise UsageError(f"explain takes gradients with TensorFlow or JAX, not the "
                             f"'{backend}' Keras backend; set KERAS_BACKEND=tensorflow or jax")
        self.n_outputs = trained.n_outputs

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs of every row, BATCH_ROWS at a time: shape (rows, outputs)."""
        return in_batches(self.outputs, x, self.n_outputs)


def _explained_output(trained: Trained, ops: Any) -> Callable[[Any, Any], Any]:
    """(raw outputs, class index per row) -> the one number per row being explained: the
    class's probability (or score, for hinge losses) as predict reports it, or the value."""
    targets, n = trained.targets, trained.n_outputs
    task, probabilistic, logits = targets.task, targets.probabilistic, targets.from_logits

    def value(out: Any, k: Any) -> Any:
        out = ops.reshape(out, (-1, n))
        if task == "regression":
            return out[:, 0]
        if task == "binary":
            s = out[:, 0]
            if probabilistic:
                p = ops.sigmoid(s) if logits else s
                return ops.where(k == 1, p, 1 - p)
            return ops.where(k == 1, s, -s)
        scores = ops.softmax(out, axis=-1) if logits else out
        return ops.sum(scores * ops.one_hot(k, n, dtype=scores.dtype), axis=-1)

    return value


def _tensorflow_functions(model: Any, value: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
    import tensorflow as tf

    x_spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    k_spec = tf.TensorSpec([None], tf.int32)

    @tf.function(input_signature=[x_spec])
    def outputs(x: Any) -> Any:
        return model(x, training=False)

    @tf.function(input_signature=[x_spec, k_spec])
    def gradients(x: Any, k: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            v = value(model(x, training=False), k)
        # Rows do not interact in inference, so the gradient of the sum is each row's own.
        return v, tape.gradient(v, x)

    def run_gradients(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v, g = gradients(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(k, tf.int32))
        return v.numpy(), g.numpy()

    return (lambda x: outputs(tf.convert_to_tensor(x, tf.float32)).numpy()), run_gradients


def _jax_functions(model: Any, value: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]

    def call(x: Any) -> Any:
        out, _ = model.stateless_call(trainable, other, x, training=False)
        return out

    def total(x: Any, k: Any) -> Any:
        v = value(call(x), k)
        return jnp.sum(v), v

    grad = jax.jit(jax.grad(total, has_aux=True))
    forward = jax.jit(call)

    def run_gradients(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, v = grad(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.int32))
        return np.asarray(v), np.asarray(g)

    return (lambda x: np.asarray(forward(jnp.asarray(x, jnp.float32)))), run_gradients


# --- integrated gradients -----------------------------------------------------------------

def integrated_gradients(fn: ModelFunction, x: np.ndarray, k: np.ndarray, baseline: np.ndarray,
                         steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attributions (rows, features), f(row) and f(baseline), by the trapezoid rule over
    ``steps`` intervals of the straight path from the baseline to each row."""
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2
    per_call = max(1, POINTS_PER_CALL // (steps + 1))
    width = x.shape[1]
    attributions, at_row, at_baseline = [], [], []
    for i in range(0, len(x), per_call):
        rows, classes = x[i:i + per_call], k[i:i + per_call]
        delta = rows - baseline
        points = baseline + alphas[None, :, None] * delta[:, None, :]
        v, g = fn.gradients(points.reshape(-1, width).astype(np.float32),
                            np.repeat(classes, steps + 1).astype(np.int32))
        g = g.reshape(len(rows), steps + 1, width).astype(np.float64)
        v = v.reshape(len(rows), steps + 1).astype(np.float64)
        attributions.append(delta * np.einsum("nsf,s->nf", g, weights))
        at_row.append(v[:, -1])
        at_baseline.append(v[:, 0])
    return np.concatenate(attributions), np.concatenate(at_row), np.concatenate(at_baseline)


@dataclass
class _Chunk:
    attributions: np.ndarray
    prediction: np.ndarray  # the explained output at the row
    at_baseline: np.ndarray  # and at the baseline
    classes: np.ndarray | None  # explained class per row (classifiers)
    gap: np.ndarray  # |completeness error| as a fraction of the output's range
    steps: np.ndarray


class _Gradients:
    """Integrated gradients chunk by chunk, with the completeness check and running totals."""

    def __init__(self, trained: Trained, baseline: np.ndarray, class_index: int | None,
                 scale: float | None, table: "_TableEncoding | None" = None):
        self.trained = trained
        self.table = table  # categorical columns: gradients are taken after their encoding
        self.fn = ModelFunction(trained, table.head if table else None)
        self.baseline = baseline.astype(np.float32)
        self.class_index = class_index
        self.scale = scale  # the output's range, when known up front
        width = len(baseline) if table is None else table.merge.shape[1]
        self.sum_abs = np.zeros(width)
        self.sum = np.zeros(width)
        self.rows = 0
        self.largest_gap = 0.0
        self.rows_beyond = 0
        self.most_steps = 0
        self.low = np.full(width, np.inf)  # the explained rows' range, for the plane picture
        self.high = np.full(width, -np.inf)

    def explain(self, x: np.ndarray) -> _Chunk:
        trained = self.trained
        columns = x
        if self.table is not None:
            x = self.table.encode(x)
        classes: np.ndarray | None = None
        k = np.zeros(len(x), np.int32)
        if trained.targets.is_classifier:
            if self.class_index is None:
                k = trained.targets.decode(self.fn.predict(x))[0].astype(np.int32)
            else:
                k[:] = self.class_index
            classes = k
        steps = START_STEPS
        attributions, at_row, at_baseline = integrated_gradients(self.fn, x, k, self.baseline,
                                                                 steps)
        scale = self.scale
        if scale is None:  # the spread of this chunk's outputs, baseline included
            every = np.concatenate([at_row, at_baseline])
            spread = float(every.max() - every.min()) if every.size else 0.0
            scale = spread if spread > 0 else 1.0
        gap = np.abs(attributions.sum(axis=1) - (at_row - at_baseline)) / scale
        used = np.full(len(x), steps)
        while steps < MAX_STEPS:
            redo = np.flatnonzero(gap > TOLERANCE)
            if not redo.size:
                break
            steps *= 2
            a, r, b = integrated_gradients(self.fn, x[redo], k[redo], self.baseline, steps)
            attributions[redo] = a
            gap[redo] = np.abs(a.sum(axis=1) - (r - b)) / scale
            used[redo] = steps
        if self.table is not None:  # each column's units (one-hot, embedding) summed
            attributions = attributions @ self.table.merge
        self.sum_abs += np.abs(attributions).sum(axis=0)
        self.sum += attributions.sum(axis=0)
        self.rows += len(x)
        if len(x):
            self.low = np.minimum(self.low, columns.min(axis=0))
            self.high = np.maximum(self.high, columns.max(axis=0))
            self.largest_gap = max(self.largest_gap, float(gap.max()))
            self.most_steps = max(self.most_steps, int(used.max()))
        self.rows_beyond += int((gap > TOLERANCE).sum())
        return _Chunk(attributions, at_row, at_baseline, classes, gap, used)

    def plane(self) -> Plane | None:
        """For two inputs: the attributions over a grid of the explained rows' plane."""
        if len(self.baseline) != 2 or not self.rows or self.table is not None:
            return None
        margin = 0.1 * np.maximum(self.high - self.low, 1e-6)
        low, high = self.low - margin, self.high + margin
        g0, g1 = np.meshgrid(np.linspace(low[0], high[0], PLANE_GRID),
                             np.linspace(low[1], high[1], PLANE_GRID))
        x = np.column_stack([g0.ravel(), g1.ravel()]).astype(np.float32)
        outputs = self.fn.predict(x)
        k = np.zeros(len(x), np.int32)
        boundary, levels = None, []
        targets = self.trained.targets
        if targets.is_classifier:
            decided, values = targets.decode(outputs)
            k[:] = decided if self.class_index is None else self.class_index
            if targets.task == "binary":  # class 1's probability (or score) is smooth
                boundary = values[:, 1]
                levels = [0.5 if targets.probabilistic else 0.0]
            else:
                boundary = decided.astype(np.float64)
                levels = list(np.arange(values.shape[1] - 1) + 0.5)
        a, _, _ = integrated_gradients(self.fn, x, k, self.baseline, START_STEPS)
        return Plane(g0, g1, a[:, 0].reshape(g0.shape), a[:, 1].reshape(g0.shape),
                     None if boundary is None else boundary.reshape(g0.shape), levels,
                     self.baseline.astype(np.float64))

    def importance(self, names: list[str]) -> list[Importance]:
        n = max(self.rows, 1)
        found = [Importance(name, float(a / n), mean=float(s / n))
                 for name, a, s in zip(names, self.sum_abs, self.sum)]
        return sorted(found, key=lambda i: -i.value)


class _TableEncoding:
    """A run with categorical columns, split where its encoding ends: a column holds the index
    of its value in the vocabulary, which has no gradient, so the gradients are taken with
    respect to the encoded units (one-hot, embedding vector, normalized number) and each
    column's units are summed into its attribution. Completeness holds all the same: the
    attributions of all units sum to f(row) - f(baseline)."""

    def __init__(self, trained: Trained, joined: Any):
        from nntrain.use.load import forward_pass

        keras = import_keras()
        core = trained.model
        self.head = keras.Model(joined, core.output)
        self._encode = forward_pass(keras.Model(core.input, joined))
        plan = trained.table
        widths = tabular.encoded_widths(plan)
        self.merge = np.zeros((sum(w for _, w in widths), len(plan.columns)))
        unit = 0
        for j, w in widths:
            self.merge[unit:unit + w, j] = 1.0
            unit += w
        if unit != int(self.head.input_shape[-1]):
            raise DataError.in_file(trained.path, f"the model encodes its columns into "
                                    f"{self.head.input_shape[-1]} units, but the run's "
                                    f"columns.json describes {unit}; was the model replaced?")

    @classmethod
    def of(cls, trained: Trained) -> "_TableEncoding | None":
        """None unless the run has categorical columns (numbers have gradients of their own)."""
        plan = trained.table
        if plan is None or all(c.type != "categorical" for c in plan.columns):
            return None
        core = trained.model
        names = [layer.name for layer in core.layers]
        if tabular.JOINED in names:
            joined = core.get_layer(tabular.JOINED).output
        else:  # one categorical column and no numbers: its encoding layer is the only one
            joined = next(layer.output for layer in core.layers
                          if layer.name.startswith(tabular.ENCODING_LAYERS))
        return cls(trained, joined)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return in_batches(self._encode, x, self.merge.shape[0]).astype(np.float32)

    def mean(self, ds: Any) -> np.ndarray:
        """The training rows' mean encoding: a category's one-hot unit holds its share of the
        training rows, an embedding the mean vector, a number its mean."""
        x = np.asarray(ds.x_train, np.float32)
        return self.encode(x).mean(axis=0) if len(x) else np.zeros(self.merge.shape[0])


def explain(model: str | Path, data: str | None = None, *,
            method: Literal["gradients", "permutation"] = "gradients",
            baseline: Literal["mean", "min", "zeros"] | None = None,
            class_name: str | None = None, fmt: Literal["csv", "jsonl"] = "csv",
            repeats: int = REPEATS, loss: str | None = None) -> Explanation:
    """Explain a run's test rows, or the rows of a CSV file (``-``: standard input).

    Everything that can be checked before the first row (the model, the baseline, the class,
    the file's header) is checked here; a bad cell further down stops the stream with a
    DataError naming its line. ``loss`` says what a bare .keras file that records none was
    trained with (which tells a classifier from a regressor)."""
    trained = load_trained(model, loss=loss)
    if len(trained.input_shape) != 1:
        raise UsageError.in_file(trained.path, "explain attributes a prediction to input "
                      f"columns; this model takes inputs of shape {trained.input_shape}")
    if trained.targets.task == "regression" and trained.n_outputs != 1:
        raise UsageError.in_file(trained.path, "explain explains one output; this regressor "
                      f"has {trained.n_outputs}")
    if method == "permutation":
        if baseline is not None or class_name is not None:
            raise UsageError("--baseline and --class are for --method gradients; permutation "
                             "importance shuffles columns instead")
        if repeats < 1:
            raise UsageError(f"--repeats: expected a positive number, got {repeats}")
        return _permutation(trained, data, fmt, repeats)
    return _explain_gradients(trained, data, baseline, class_name, fmt)


def _explain_gradients(trained: Trained, data: str | None, kind: str | None,
                       class_name: str | None, fmt: str) -> Explanation:
    rows = _recorded_rows(trained)
    kind = _baseline_kind(trained, rows, kind)
    class_index = _class_index(trained, class_name)
    table = _TableEncoding.of(trained)
    if table is not None and kind != "mean":
        raise UsageError(f"--baseline {kind}: a run with categorical columns is explained "
                         "from the training rows' mean only (each category weighted by its "
                         "share of the training rows); a minimum or a zero has no meaning "
                         "for a category")
    # A table's baseline is its training rows' mean encoding: the run's data is read again.
    ds = _test_rows(trained, need_test=data is None) if data is None or table else None
    names, chunks, what = _input_rows(trained, data, ds)
    if table is not None:
        base = table.mean(ds)
    else:
        base = rows.baseline(kind) if rows is not None else \
            np.zeros(trained.n_inputs, np.float32)
    scale = _output_scale(trained, rows)
    ig = _Gradients(trained, base, class_index, scale, table)
    summary = Summary("gradients", trained.name, what, baseline=kind,
                      explained=_what_is_explained(trained, class_name), plane_names=names)
    text = _AttributionText(trained, names, fmt)

    def stream() -> Iterator[str]:
        header = text.header  # written with the first rows: a file without any gets nothing
        for x in chunks:
            for i in range(0, len(x), BATCH_ROWS):
                first = ig.rows
                part = ig.explain(x[i:i + BATCH_ROWS])
                yield header + text.format(first, part)
                header = ""
                summary.rows = ig.rows
        summary.rows = ig.rows
        summary.importance = ig.importance(names)
        summary.largest_gap, summary.rows_beyond = ig.largest_gap, ig.rows_beyond
        summary.most_steps = ig.most_steps
        if not ig.rows:
            raise DataError.in_file(what, "no rows to explain")

    return Explanation(stream(), summary, ig.plane)


def _recorded_rows(trained: Trained) -> TrainingRows | None:
    if trained.run_dir is None or not (trained.run_dir / BASELINE).is_file():
        return None
    path = trained.run_dir / BASELINE
    try:
        rows = TrainingRows.from_json(read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError.in_file(path, f"cannot read it: {exc}") from None
    if len(rows.mean) != trained.n_inputs:
        raise DataError.in_file(path, f"records {len(rows.mean)} columns, but the model takes "
                      f"{trained.n_inputs}")
    return rows


def _baseline_kind(trained: Trained, rows: TrainingRows | None, kind: str | None) -> str:
    if rows is not None:
        return kind or "mean"
    if kind == "zeros":
        return kind
    what = ("a bare .keras file has no training rows" if trained.run_dir is None else
            f"the run has no {BASELINE} (it was trained before nntrain recorded one)")
    wanted = f"--baseline {kind} needs the training rows' {kind}" if kind else \
        "explain measures attributions from the training rows' mean"
    raise UsageError.in_file(trained.name, f"{wanted}, but {what}",
                  hint="pass --baseline zeros, or train the run again")


def _class_index(trained: Trained, class_name: str | None) -> int | None:
    if class_name is None:
        return None
    if not trained.targets.is_classifier:
        raise UsageError("--class is for classifiers; this model is a regressor, and explain "
                         "explains its value")
    classes = trained.targets.classes
    if class_name not in classes:
        raise UsageError(f"--class: no class '{class_name}'{did_you_mean(class_name, classes)}; "
                         f"the classes are {', '.join(classes)}")
    return classes.index(class_name)


def _what_is_explained(trained: Trained, class_name: str | None) -> str:
    if not trained.targets.is_classifier:
        return "the predicted value"
    what = "probability" if trained.targets.probabilistic else "score"
    if class_name is not None:
        return f"the {what} of class {class_name}"
    return f"the {what} of the predicted class"


def _output_scale(trained: Trained, rows: TrainingRows | None) -> float | None:
    """The output's range for the completeness check: 1 for a probability, the training
    targets' range for a regressor that recorded it; None: measure it on each chunk."""
    if trained.targets.probabilistic:
        return 1.0
    if rows is not None and rows.target_range is not None:
        low, high = rows.target_range
        if high > low:
            return high - low
    return None


def _input_rows(trained: Trained, data: str | None, ds: Any = None
                ) -> tuple[list[str], Iterator[np.ndarray], str]:
    """Column names, chunks of input rows, and what they are: the run's test rows (``ds``,
    the run's data), or the rows of a CSV file (only the model's feature columns are read; the
    target may be absent)."""
    if data is None:
        names = trained.feature_names or list(ds.feature_names)
        return names, (x for x, _ in split_batches(ds, "test")), "test"
    reader = InputRows(data, trained)
    names = trained.table.names if trained.table is not None else \
        reader.columns.feature_names
    return names, iter(reader), reader.name


def _test_rows(trained: Trained, need_test: bool = True) -> Any:
    ds = run_rows(trained)
    if need_test and not len(ds.x_test):
        raise UsageError.in_file(trained.run_dir, "the run has no test rows (data.split.test "
                      "is 0); pass --data FILE to explain other rows")
    return ds


class _AttributionText:
    """A chunk of attributions as CSV lines or JSON lines: row, one column per input
    feature, the explained class (classifiers), the prediction and the baseline's."""

    def __init__(self, trained: Trained, names: list[str], fmt: str):
        self.fmt = fmt
        self.classifier = trained.targets.is_classifier
        self.names = names
        self.columns = ["row", *names, *(["class"] * self.classifier), "prediction",
                        "baseline_prediction"]
        if fmt == "csv":
            self.header = _csv_line(self.columns)
            self.labels = [_csv_line([c]).rstrip("\n") for c in trained.targets.classes] \
                if self.classifier else []
            cells = ["%d", *["%.9g"] * len(names), *(["%s"] * self.classifier), "%.9g", "%.9g"]
            self.row = ",".join(cells)
        else:
            self.header = ""
            self.labels = [c for c in trained.targets.class_labels] if self.classifier else []

    def format(self, first: int, part: _Chunk) -> str:
        n = len(part.prediction)
        index = range(first, first + n)
        cells: list[Any] = [index, *part.attributions.T.tolist()]
        if self.classifier:
            cells.append([self.labels[k] for k in part.classes])
        cells += [part.prediction.tolist(), part.at_baseline.tolist()]
        rows = zip(*cells)
        if self.fmt == "csv":
            return "".join(self.row % r + "\n" for r in rows)
        return "".join(json.dumps(dict(zip(self.columns, map(_finite, r)))) + "\n"
                       for r in rows)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: null instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


# --- permutation importance ---------------------------------------------------------------

def _permutation(trained: Trained, data: str | None, fmt: str, repeats: int) -> Explanation:
    x, y, what, names = _labeled_rows(trained, data)
    fn = ModelFunction(trained)
    score, metric = _scorer(trained)
    base = score(y, fn.predict(x))
    bigger = registry.bigger_is_better(metric)
    worse = (lambda s: base - s) if bigger else (lambda s: s - base)
    # The same shuffles on every call: a run explained twice gives the same numbers.
    rng = np.random.RandomState(0)
    found = []
    for j, name in enumerate(names):
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, j] = x[rng.permutation(len(x)), j]
            drops.append(worse(score(y, fn.predict(shuffled))))
        found.append(Importance(name, float(np.mean(drops)), float(np.std(drops))))
    found.sort(key=lambda i: -i.value)
    summary = Summary("permutation", trained.name, what, rows=len(x), importance=found,
                      metric=metric, score=base, repeats=repeats,
                      change=f"{'drop' if bigger else 'rise'} in {metric}")
    return Explanation(iter([_importance_text(found, fmt)]), summary)


def _labeled_rows(trained: Trained, data: str | None
                  ) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Up to PERMUTATION_ROWS rows with their targets: the run's test rows or a file's."""
    if data is None:
        ds = _test_rows(trained)
        parts = list(split_batches(ds, "test", PERMUTATION_ROWS))
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return x, y, "test", trained.feature_names or list(ds.feature_names)
    x, y, what = read_labeled(trained, data)
    if not len(x):
        raise DataError.in_file(what, "no rows to explain")
    names = trained.table.names if trained.table is not None else \
        trained.feature_names or _file_features(data, trained)
    return x[:PERMUTATION_ROWS], y[:PERMUTATION_ROWS], what, names


def _file_features(data: str, trained: Trained) -> list[str]:
    """The feature names of a data file a bare .keras model was given (npz: x0, x1, ...)."""
    if data.endswith(".npz") or data == "-":
        return [f"x{i}" for i in range(trained.n_inputs)]
    reader = InputRows(data, trained)
    reader.close()
    return reader.columns.feature_names


def _scorer(trained: Trained) -> tuple[Callable[[np.ndarray, np.ndarray], float], str]:
    """(targets, outputs) -> the run's first metric, as Keras computes it in training; the
    loss when the run has no metric."""
    from nntrain.model import build_loss, build_metrics

    training = trained.training
    loss = build_loss(training)
    if not training.metrics:
        return (lambda y, out: float(loss(y, out))), "loss"
    model = trained.model
    # Compiling resolves names such as "accuracy" to the variant the loss implies, as training.
    model.compile(loss=loss, metrics=build_metrics(training)[:1])

    def score(y: np.ndarray, out: np.ndarray) -> float:
        model.reset_metrics()
        values = model.compute_metrics(None, y, out)
        return float(next(v for k, v in values.items() if k != "loss"))

    probe = model.compute_metrics(None, np.zeros(0), np.zeros((0, trained.n_outputs)))
    return score, next(k for k in probe if k != "loss")


def _importance_text(found: list[Importance], fmt: str) -> str:
    if fmt == "csv":
        return _csv_line(["feature", "importance", "std"]) + "".join(
            _csv_line([i.feature, "%.9g" % i.value, "%.9g" % (i.spread or 0.0)]) for i in found)
    return "".join(json.dumps({"feature": i.feature, "importance": _finite(i.value),
                               "std": _finite(i.spread)}) + "\n" for i in found)


# --- the picture ----------------------------------------------------------------------------

# Bars beyond this many are unreadable; the table on stderr and stdout have them all.
MAX_BARS = 30


def plot_importance(summary: Summary, path: Path, plane: Plane | None = None) -> Path:
    """A horizontal bar chart of the global importance, most important on top; for a
    two-input model, beside it the attribution of each input over the plane, with the
    decision boundary drawn over them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nntrain.runs.rundir import atomic_write

    shown = summary.importance[:MAX_BARS][::-1]
    names = [i.feature for i in shown]
    values = [i.value for i in shown]
    height = max(1.7 + 0.3 * len(shown), 4.2 if plane is not None else 0.0)
    bars_width = 7.0 if plane is None else 4.2
    width = bars_width + (0.0 if plane is None else 2 * 4.6)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    longest = max((len(n) for n in names), default=1)
    left = min(0.6 + 0.075 * longest, 3.0)
    fig.subplots_adjust(left=left / width, right=1 - 0.3 / width, bottom=0.85 / height,
                        top=1 - 0.45 / height, wspace=0.45)
    columns = 1 if plane is None else 3
    grid = fig.add_gridspec(1, columns, width_ratios=[bars_width] + [4.6] * (columns - 1))
    ax = fig.add_subplot(grid[0, 0])
    if summary.method == "gradients":
        ax.barh(names, values, color="#1f77b4")
        ax.set_xlabel(f"mean |attribution| to {summary.explained}")
        baseline = "zeros" if summary.baseline == "zeros" else f"training {summary.baseline}"
        ax.set_title(f"integrated gradients, {summary.rows} rows\nbaseline: {baseline}")
    else:
        ax.barh(names, values, xerr=[i.spread or 0.0 for i in shown], color="#1f77b4",
                ecolor="#555555", capsize=3)
        ax.set_xlabel(f"{summary.change} when the column is shuffled\n"
                      f"mean ± std of {summary.repeats} shuffles")
        ax.set_title(f"permutation importance, {summary.rows} rows")
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if plane is not None:
        _draw_plane(fig, grid, plane, summary.plane_names)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    return path


def _draw_plane(fig: Any, grid: Any, plane: Plane, axis_names: list[str]) -> None:
    """Each input's attribution over the plane, red raising the explained output and blue
    lowering it, the decision boundary in black and the baseline as a star."""
    limit = float(max(np.abs(plane.a0).max(), np.abs(plane.a1).max(), 1e-12))
    levels = np.linspace(-limit, limit, 21)
    for i, (values, name) in enumerate(((plane.a0, axis_names[0]), (plane.a1, axis_names[1]))):
        ax = fig.add_subplot(grid[0, i + 1])
        shade = ax.contourf(plane.g0, plane.g1, values, levels=levels, cmap="RdBu_r")
        if plane.boundary is not None and plane.boundary.min() < max(plane.levels) and \
                plane.boundary.max() > min(plane.levels):
            ax.contour(plane.g0, plane.g1, plane.boundary, levels=plane.levels,
                       colors="black", linewidths=1.0)
        ax.plot(*plane.baseline, marker="*", markersize=12, color="black", linestyle="")
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
        ax.set_title(f"attribution of {name}")
        fig.colorbar(shade, ax=ax, ticks=np.linspace(-limit, limit, 5), format="%.2g")
