"""A trained model and what it takes to use it: safe loading, the run's config, its targets'
contract (labels.json), feature columns and missing-value policy, the run's own rows, and new
rows from a file.

Used by ``eval``, ``predict`` and ``export``. A model is named by a run directory (which holds
``model.keras`` and the resolved config) or by a bare ``.keras`` file. Models are always loaded
with Keras's safe mode; see ``load_keras_file``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nntrain import registry
from nntrain.config import LoadedConfig, load_config
from nntrain.config.schema import CsvData, NpzData, TrainingConfig
from nntrain.data.csvfile import Columns, Missing, open_csv, read_chunks, read_csv
from nntrain.data.dataset import Dataset, batch_rows, load_dataset
from nntrain.data.tabular import (TablePlan, core_of, read_input_rows, read_labeled_rows,
                                  read_plan)
from nntrain.data.preprocess import PREPROCESSING, Preprocessing
from nntrain.errors import DataError, UsageError, did_you_mean
from nntrain.filecheck import not_regular
from nntrain.runs.guard import complete_staged
from nntrain.runs.rundir import CONFIG, MANIFEST, MODEL, read_json
from nntrain.targets import Targets, fit_targets
from nntrain.tf import import_keras, import_tensorflow

# Rows per call of the forward pass: the per-call overhead vanishes, and the activations of a
# batch stay small whatever the model.
BATCH_ROWS = 4096


@dataclass
class Trained:
    """A loaded model plus what the run recorded about its inputs and outputs."""

    model: Any
    path: Path  # the .keras file
    run_dir: Path | None  # None for a bare .keras file
    loaded: LoadedConfig | None  # the run's resolved config
    training: TrainingConfig  # the loss and metrics to evaluate with
    targets: Targets  # task, classes and labels (labels.json), how outputs are read
    feature_names: list[str] | None  # input columns, in order; None: all but the target
    target: str
    # Missing-value handling learned in training (preprocessing.json); the normalization is
    # inside the model already.
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # A run with column types (columns.json): files are encoded by it, and ``model`` is the
    # trained model inside the saved raw-row one.
    table: TablePlan | None = None

    @property
    def name(self) -> str:
        return str(self.run_dir if self.run_dir is not None else self.path)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape[1:])

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.model.output_shape[1:]))


# --- loading -----------------------------------------------------------------------------

def load_trained(path: str | Path, *, loss: str | None = None,
                 metrics: list[str] | None = None, target: str | None = None) -> Trained:
    """Open a run directory or a bare .keras file. ``loss``/``metrics`` replace the recorded
    ones (a bare file without a recorded loss needs ``loss``); ``target`` names the label column
    of new data files."""
    path = Path(path)
    if not path.exists():
        with contextlib.suppress(OSError):
            complete_staged(path)  # a kill between the 'finished' manifest and the rename
    if path.is_dir():
        return _open_run(path, loss, metrics, target)
    if (why := not_regular(path, "a .keras file or a run directory")) is not None:
        raise UsageError.in_file(path, why)
    if not path.exists():
        raise UsageError.in_file(path, "no such run directory or model file")
    if path.suffix != ".keras":
        raise UsageError.in_file(path, "not a .keras file; nntrain loads only Keras 3 .keras "
                      "files, or a run directory, which holds one")
    config = _keras_config(path)
    if isinstance((config.get("config") or {}).get("input_layers"), dict):
        raise UsageError.in_file(path, "the model takes named columns (a table with "
                      "categorical columns), which only its run directory describes; pass the "
                      "run directory, or call it in Keras with a dict of columns")
    model = load_keras_file(path, config)
    compiled = config.get("compile_config")
    compiled = compiled if isinstance(compiled, dict) else {}
    loss_spec = loss or _recorded_loss(compiled)
    if loss_spec is None:
        raise UsageError.in_file(path, "the file does not record the loss it was trained "
                      "with; name it with --loss (e.g. --loss sparse_categorical_crossentropy), "
                      "which also tells a classifier from a regressor")
    recorded = metrics if metrics is not None else _recorded_metrics(compiled)
    # Without a run's config the target column is the one generate-data writes, unless named.
    training = _training_spec(loss_spec, recorded)
    return Trained(model, path, None, None, training, _targets(None, training, model), None,
                   target or "y")


def _open_run(run_dir: Path, loss: str | None, metrics: list[str] | None,
              target: str | None) -> Trained:
    model_file = run_dir / MODEL
    if not model_file.is_file():
        status = (_read_optional_json(run_dir / MANIFEST) or {}).get("status")
        if status:  # interrupted, failed, diverged, or still running
            raise UsageError.in_file(run_dir, f"the run has no {MODEL}: its status is "
                          f"'{status}'", hint=f"resume it with: nntrain train --resume {run_dir}")
        raise UsageError.in_file(run_dir, f"not a run directory: there is no {MODEL} in it")
    if not (run_dir / CONFIG).is_file():
        raise UsageError.in_file(run_dir, f"not a complete run directory: {CONFIG} is "
                      f"missing; use {model_file} as a bare model file instead")
    loaded = load_config(run_dir / CONFIG)
    model = load_keras_file(model_file)
    training = loaded.config.training
    if loss is not None or metrics is not None:
        training = _training_spec(loss or training.loss.model_dump(),
                                  metrics if metrics is not None
                                  else [m.name for m in training.metrics])
    manifest = _read_optional_json(run_dir / MANIFEST) or {}
    features = (manifest.get("data") or {}).get("features")
    data = loaded.config.data
    if features is None and isinstance(data, CsvData):
        features = data.features
    default_target = data.target if isinstance(data, CsvData) else "y"
    recorded = _read_optional_json(run_dir / PREPROCESSING)
    preprocessing = Preprocessing.from_json(recorded) if recorded else Preprocessing()
    table = read_plan(run_dir)
    if table is not None:
        model = core_of(model)
    return Trained(model, model_file, run_dir, loaded, training,
                   _targets(run_dir, training, model), features, target or default_target,
                   preprocessing, table)


def _targets(run_dir: Path | None, training: TrainingConfig, model: Any) -> Targets:
    """The run's targets' contract: the loss's task, the model's outputs and labels.json."""
    loss = training.loss
    return Targets.read(run_dir, loss.name, from_logits=bool(loss.args.get("from_logits")),
                        n_outputs=int(np.prod(model.output_shape[1:])))


def _read_optional_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise DataError.in_file(path, f"cannot read it: {exc}") from None


def load_keras_file(path: Path, config: dict[str, Any] | None = None) -> Any:
    """Load a .keras file in Keras's safe mode, with a one-line message for every failure.

    Safe mode refuses Python code embedded in the file (Lambda layers, lambdas as activations);
    the config is also scanned first so that a Lambda is named clearly and nothing is built.
    Safe mode is not a sandbox: see the README.
    """
    keras = import_keras()
    config = config if config is not None else _keras_config(path)
    lam = _find_class(config, "Lambda")
    if lam:
        raise UsageError.in_file(path, f"refused to load an unsafe model: it contains a Lambda "
                      f"layer ('{lam}'), Python code that would run on loading; nntrain loads "
                      "models in Keras's safe mode only")
    if keras.backend.backend() != "tensorflow" and any(
            _find_class(config, lookup) for lookup in ("StringLookup", "IntegerLookup")):
        # Keras builds these layers on TensorFlow whatever the backend: import it quietly
        # first, or its start-up lines land on stderr (a table run's raw-row model).
        import_tensorflow()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if "safe_mode" in text or "unsafe" in text.lower() or "arbitrary code" in text:
            raise UsageError.in_file(path, "refused to load an unsafe model: "
                          f"{_first_line(text)}") from None
        raise DataError.in_file(path, f"cannot load the model: {_first_line(text)}") from None
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError.in_file(path, f"corrupted model file: {_first_line(str(exc))}") from None


def _keras_config(path: Path) -> dict[str, Any]:
    """config.json of a .keras archive, after checking the archive is whole (CRCs)."""
    try:
        with zipfile.ZipFile(path) as z:
            missing = {"config.json", "model.weights.h5"} - set(z.namelist())
            if missing:
                raise DataError.in_file(path, "not a Keras model file: it has no "
                              f"{' or '.join(sorted(missing))}")
            bad = z.testzip()
            if bad is not None:
                raise DataError.in_file(path, f"corrupted model file: {bad} fails its checksum")
            config = json.loads(z.read("config.json"))
    except zipfile.BadZipFile:
        raise DataError.in_file(path, "truncated or corrupted model file (not a valid .keras "
                      "zip archive)") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError.in_file(path, "corrupted model file: config.json is not valid "
                      "JSON") from None
    except OSError as exc:
        raise DataError.in_file(path, f"cannot read it: {exc.strerror}") from None
    if not isinstance(config, dict):
        raise DataError.in_file(path, "not a Keras model file: config.json is not a mapping")
    return config


def _find_class(node: Any, class_name: str) -> str | None:
    """The name of the first serialized object of ``class_name`` anywhere in a config."""
    if isinstance(node, dict):
        if node.get("class_name") == class_name:
            inner = node.get("config")
            return str(inner.get("name", class_name)) if isinstance(inner, dict) else class_name
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = _find_class(item, class_name)
            if found:
                return found
    return None


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "unknown error"


def _object_name(obj: Any) -> str | None:
    """'mse' or {"class_name": ..., "config": {"name": ...}} -> a name."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        inner = obj.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
        return obj.get("class_name")
    return None


def _recorded_loss(compiled: dict[str, Any]) -> dict[str, Any] | None:
    """The loss Keras recorded in the file when the model was compiled, by name."""
    loss = compiled.get("loss")
    name = _object_name(loss)
    if name is None:
        return None
    args = loss.get("config", {}) if isinstance(loss, dict) else {}
    return {"name": name, **({"from_logits": True} if args.get("from_logits") else {})}


def _recorded_metrics(compiled: dict[str, Any]) -> list[str]:
    metrics = compiled.get("metrics") or []
    names = [_object_name(m) for m in (metrics if isinstance(metrics, list) else [])]
    # Metrics Keras recorded that nntrain has no name for are left out, not an error.
    return [n for n in names if n and _resolves(n)]


def _resolves(name: str) -> bool:
    try:
        registry.resolve("metric", name, registry.METRICS)
    except registry.UnknownName:
        return False
    return True


def _training_spec(loss: str | dict[str, Any], metrics: list[str]) -> TrainingConfig:
    """Loss and metrics by name (as --loss and --metrics give them) -> a TrainingConfig."""
    spec = dict(loss) if isinstance(loss, dict) else {"name": loss}
    spec["name"] = registry.resolve("loss", spec["name"], registry.LOSSES)
    names = [registry.resolve("metric", m, registry.METRICS) for m in metrics]
    return TrainingConfig.model_validate({"loss": spec, "metrics": names})


# --- the run's own rows ------------------------------------------------------------------

def run_rows(trained: Trained, *, check_fingerprint: bool = True) -> Dataset:
    """The run's data, split and encoded exactly as training did."""
    loaded = trained.loaded
    if loaded is None:
        raise UsageError.in_file(trained.path, "a bare model file has no data of its own; "
                      "pass --data FILE")
    config = loaded.config
    if getattr(config.data, "path", None) == "-":
        raise UsageError.in_file(trained.run_dir, "the run read its data from standard input, "
                      "so its rows cannot be read again; pass --data FILE")
    ds = load_dataset(config.data, config.training.seed, loaded.base_dir,
                      stratify_default=trained.targets.is_classifier)
    fit_targets(config, ds)
    manifest = _read_optional_json(trained.run_dir / MANIFEST) or {}
    recorded = (manifest.get("data") or {}).get("fingerprint")
    if check_fingerprint and recorded and recorded != ds.fingerprint:
        raise DataError.in_file(ds.source, "the data changed since the run was trained (its "
                      "fingerprint differs from the run's manifest.json), so the run's test rows "
                      "cannot be recreated", hint="pass --data FILE to score the file as it is")
    return ds


def split_batches(ds: Dataset, split: str, limit: int | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) batches of one split, at most ``limit`` rows in all; streamed data (data.stream)
    is read from its file batch by batch."""
    x, y = ds.split(split)
    limit = len(x) if limit is None else min(limit, len(x))
    if ds.streamed:
        # No bigger batches than asked for: a batch of pictures is decoded whole.
        rows = max(1, min(batch_rows(x, BATCH_ROWS), limit))
        batches = ds.inputs(split, rows)["x"].as_numpy_iterator()
    else:
        batches = ((x[i:i + BATCH_ROWS], y[i:i + BATCH_ROWS])
                   for i in range(0, limit, BATCH_ROWS))
    for bx, by in batches:
        if limit <= 0:
            return
        yield bx[:limit], by[:limit]
        limit -= len(bx)


def first_rows(ds: Dataset, splits: tuple[str, ...], n: int) -> np.ndarray:
    """Up to n input rows, taken from the splits in order."""
    rows: list[np.ndarray] = []
    for split in splits:
        for x, _ in split_batches(ds, split, n - sum(map(len, rows))):
            rows.append(x)
    return np.concatenate(rows) if rows else np.zeros((0, *ds.x_train.shape[1:]), np.float32)


# --- new rows from a file ----------------------------------------------------------------

def read_labeled(trained: Trained, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """All rows of a CSV file or .npz archive (``-``: standard input, CSV) with their targets,
    preprocessed as in training and encoded for the loss: (x, y, name)."""
    name = "<stdin>" if source == "-" else source
    policy = trained.preprocessing.missing
    missing: Missing = "drop" if policy == "drop" else "error" if policy == "error" else "keep"
    data = trained.loaded.config.data if trained.loaded else None
    if source.endswith(".npz"):
        from nntrain.data.arrays import read_npz

        keys = (data.x, data.y, data.features) if isinstance(data, NpzData) else ("x", "y", None)
        table = read_npz(source, *keys, name, missing=missing)
    elif trained.table is not None:
        table = read_labeled_rows(trained.table, source, name, trained.target, missing)
    else:
        table = read_csv(source, trained.target, trained.feature_names, name, missing=missing)
    x, y = table.x, table.y
    if policy == "drop":  # as training did; the rest get the training rows' fill values
        keep = np.isfinite(x.reshape(len(x), -1)).all(axis=1) & np.isfinite(
            y.astype(np.float64))
        x, y = x[keep], y[keep]
        if not len(x):
            raise DataError.in_file(name, "every row has a missing value (the run drops them)")
    x = _shaped(trained, trained.preprocessing.fill_missing(x), name)
    column = f"column '{trained.target}': " if not name.endswith(".npz") else ""
    return x, trained.targets.encode(y, table.labels, name=name, column=column), name


def _shaped(trained: Trained, x: np.ndarray, name: str) -> np.ndarray:
    if int(np.prod(x.shape[1:])) != trained.n_inputs:
        raise DataError.in_file(name, f"has {int(np.prod(x.shape[1:]))} input values per row, "
                                f"but the model takes {trained.n_inputs}")
    return x.reshape((-1, *trained.input_shape)).astype(np.float32, copy=False)


class InputRows:
    """The inputs of a CSV file (or standard input), chunk by chunk, for predict: the header is
    checked at once, and only the model's feature columns are read (the target may be absent).
    Cells are parsed by the reader ``train`` uses, with its messages."""

    def __init__(self, source: str, trained: Trained):
        self.name = "<stdin>" if source == "-" else source
        self.trained = trained
        self._stdin = source == "-"
        self._table: np.ndarray | None = None
        if trained.table is not None:  # read whole, with the run's vocabularies
            pre = trained.preprocessing
            self._table = read_input_rows(trained.table, source, self.name,
                                          "keep" if pre.fill is not None else "error")
            self._fh = None
            return
        self._fh: TextIO | None = _stdin_text() if self._stdin else open_csv(source, self.name)
        try:
            self.columns = self._columns(trained)
        except BaseException:
            self.close()
            raise

    def _columns(self, trained: Trained) -> Columns:
        line = self._fh.readline()
        if not line:
            raise DataError.in_file(self.name, "the file is empty; expected a header row")
        header = [h.strip().lstrip("\ufeff") for h in next(csv.reader([line]), [])]
        index = {h: i for i, h in enumerate(header)}
        listing = f"the columns are: {', '.join(header)}"
        wanted = trained.feature_names or [h for h in header if h != trained.target]
        for f in wanted:
            if f not in index:
                raise DataError.in_file(
                    self.name, f"no feature column '{f}'{did_you_mean(f, header)}; the model "
                    f"takes {', '.join(wanted)}; {listing}", 1)
        if len(wanted) != trained.n_inputs:
            raise DataError.in_file(self.name, f"the model takes {trained.n_inputs} input "
                                    f"columns, but the file has {len(wanted)} besides the "
                                    f"target '{trained.target}' ({', '.join(wanted)})", 1)
        features = [index[f] for f in wanted]
        # The reader wants a target column; predict has none, so the first feature stands in
        # (it is parsed as a number anyway, and the value is never used).
        return Columns(header, features, features[0])

    def __iter__(self) -> Iterator[np.ndarray]:
        pre = self.trained.preprocessing
        # Rows with missing inputs: filled in with the run's values, or an error naming the line
        # (a run that dropped such rows in training cannot predict them either).
        missing: Missing = "drop" if pre.fill is not None else "error"
        if self._table is not None:
            yield _shaped(self.trained, pre.fill_missing(self._table), self.name)
            return
        try:
            for chunk in read_chunks(self._fh, self.columns, self.name, missing,
                                     numeric_target=True):
                yield _shaped(self.trained, pre.fill_missing(chunk.x), self.name)
        finally:
            self.close()

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        if not self._stdin:
            fh.close()
        elif isinstance(fh, io.TextIOWrapper) and fh is not sys.stdin:
            fh.detach()  # leave standard input itself open


def _stdin_text() -> TextIO:
    """Standard input decoded as read_csv decodes it: UTF-8, a byte-order mark dropped."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin  # a text stream without bytes underneath (tests, embedding programs)
    return io.TextIOWrapper(buffer, encoding="utf-8-sig", newline="")


# --- running the model -------------------------------------------------------------------

def forward_pass(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``model(x, training=False)`` compiled once (tf.function or jax.jit). model.predict sets
    up a data pipeline per call: on 4096-row batches this is hundreds of times faster, and
    still ~8x on one large call (benchmarks/predict_throughput.py)."""
    from nntrain.backend import compiled_forward

    import_keras()
    fn = compiled_forward(model)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(fn(x)).reshape(len(x), -1)

    return run


def in_batches(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
               width: int) -> np.ndarray:
    """``forward`` of every row, BATCH_ROWS at a time; shape (rows, width)."""
    if not len(x):
        return np.zeros((0, width), dtype=np.float32)
    return np.concatenate([forward(x[i:i + BATCH_ROWS]).reshape(-1, width)
                           for i in range(0, len(x), BATCH_ROWS)])


def predict_all(trained: Trained, x: np.ndarray,
                forward: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Raw model outputs for every row, BATCH_ROWS at a time; shape (rows, outputs)."""
    return in_batches(forward or forward_pass(trained.model), x, trained.n_outputs)
