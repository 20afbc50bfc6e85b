"""Tables with categorical columns (text, or integer codes such as a zip code) beside numbers,
through Keras's own preprocessing layers.

Training runs on a float32 matrix with one column per feature, as every other run does: a
numeric column holds its number, a categorical one the index of its value in the vocabulary
learned from the training rows (0: a value they never held, the out-of-vocabulary bucket).
The trained model (``build_model``) starts by turning those indices into one-hot units
(CategoryEncoding) or learned vectors (Embedding) and normalizing the numbers, with built-in
layers and keras.ops only, so it runs on any backend. The saved model (``raw_model``) puts
StringLookup/IntegerLookup in front of it, with the same vocabularies: it takes raw rows, a
dict of columns, and loads with plain ``keras.models.load_model``. The run's columns.json
records the plan (types and vocabularies), and eval and predict encode files with it in numpy.

Why not keras.utils.FeatureSpace: it adapts and encodes through tf.data, while nntrain's loop
trains on arrays in a row order of its own (that is what makes resuming exact). The layers
FeatureSpace is made of give the same saved model without taking the loop over.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from nntrain.config.schema import Column, CsvData, ModelConfig
from nntrain.data.csvfile import MISSING_HINT, Missing, Table, is_missing, open_csv
from nntrain.data.preprocess import (Normalization, Preprocessing, fill_values,
                                     fit_normalization, policy_name)
from nntrain.data.sources import data_files, local_path
from nntrain.errors import ConfigError, DataError, did_you_mean

COLUMNS = "columns.json"  # in the run directory: the plan eval and predict encode files with
CORE = "nntrain_model"  # the trained model's name, nested inside the saved raw-row model


@dataclass(frozen=True)
class ColumnPlan:
    """One feature column: how it is read and how it enters the model."""

    name: str
    type: str  # numeric or categorical
    values: str = "float"  # the raw input's kind: float, integer or string
    vocabulary: tuple[Any, ...] = ()  # categorical: the training rows' values, sorted
    encoding: str = "one_hot"  # categorical: one_hot or embedding
    embedding_dim: int = 0

    def key(self, cell: str) -> Any:
        """A cell's vocabulary key: the text, or the integer for integer-coded columns."""
        if self.values != "integer":
            return cell
        number = _number(cell)
        return int(number) if number is not None and number.is_integer() else None

    def to_json(self) -> dict[str, Any]:
        if self.type == "numeric":
            return {"name": self.name, "type": "numeric"}
        out = {"name": self.name, "type": "categorical", "values": self.values,
               "encoding": self.encoding, "vocabulary": list(self.vocabulary)}
        if self.encoding == "embedding":
            out["embedding_dim"] = self.embedding_dim
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ColumnPlan":
        return cls(data["name"], data["type"], data.get("values", "float"),
                   tuple(data.get("vocabulary", ())), data.get("encoding", "one_hot"),
                   int(data.get("embedding_dim", 0)))


@dataclass
class TablePlan:
    """Every feature column, in the order of the model's input matrix."""

    columns: list[ColumnPlan]
    normalization: Normalization | None = None  # of the numeric columns, in their order

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def numeric(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.type == "numeric"]

    def describe(self) -> str:
        """'color (3 values, one-hot), city (120 values, embedding of 11)'."""
        parts = []
        for c in self.columns:
            if c.type == "categorical":
                how = ("one-hot" if c.encoding == "one_hot"
                       else f"embedding of {c.embedding_dim}")
                parts.append(f"{c.name} ({len(c.vocabulary)} values, {how})")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        norm = self.normalization
        return {"columns": [c.to_json() for c in self.columns],
                "normalize": None if norm is None else {
                    "kind": norm.kind, "columns": [self.columns[i].name for i in self.numeric],
                    "mean": norm.mean.tolist(), "variance": norm.variance.tolist()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TablePlan":
        # The normalization lives in the model; the use side only encodes.
        return cls([ColumnPlan.from_json(c) for c in data["columns"]])

    def encode(self, rows: "TextRows", missing: Missing) -> np.ndarray:
        """Cells -> the model's float32 input matrix. Missing cells (empty; nan or inf in a
        numeric column): an error naming the line with ``error``; NaN with ``drop``; with
        ``keep`` NaN in numeric columns (filled in later) and the out-of-vocabulary bucket
        in categorical ones."""
        x = np.empty((len(rows.lines), len(self.columns)), dtype=np.float32)
        for j, column in enumerate(self.columns):
            cells = rows.cells[column.name]
            if column.type == "numeric":
                values = _numbers(cells)
                x[:, j] = values if values is not None else [
                    _numeric_cell(cell, column.name, rows, r, missing)
                    for r, cell in enumerate(cells.tolist())]
                continue
            # Each distinct value is looked up once.
            distinct, inverse = np.unique(cells, return_inverse=True)
            index = {value: i + 1 for i, value in enumerate(column.vocabulary)}
            ids = np.asarray([index.get(column.key(v), 0) if v else math.nan
                              for v in distinct.tolist()], dtype=np.float64)
            empty = np.isnan(ids)
            if empty.any() and missing == "error":
                r = int(np.flatnonzero(cells == "")[0])
                raise DataError.in_file(rows.name, f"column '{column.name}' is empty",
                                        int(rows.lines[r]), hint=MISSING_HINT)
            if missing == "keep":
                ids[empty] = 0.0
            x[:, j] = ids[inverse.reshape(-1)]
        return x


@dataclass
class TextRows:
    """Rows of a CSV file as text: the cells of each feature column, stripped."""

    name: str  # the file, as errors name it
    cells: dict[str, np.ndarray]  # numpy strings, one array per column
    lines: np.ndarray  # the file line of each row
    targets: np.ndarray | None = None  # the target cells; None without a target column

    def take(self, rows: np.ndarray) -> "TextRows":
        return TextRows(self.name, {c: v[rows] for c, v in self.cells.items()},
                        self.lines[rows], None if self.targets is None else self.targets[rows])


# --- reading -------------------------------------------------------------------------------

def read_rows(path: str, name: str, features: list[str] | None, target: str | None,
              ) -> TextRows:
    """Every row of a CSV file as text. ``features``: the columns to keep (all but the target
    when None); ``target``: the label column, or None when the file need not have it."""
    if path == "-":
        raise DataError.in_file("<stdin>", "a table with categorical (text) feature columns "
                                "is read from a file, not standard input; save the rows to a "
                                "file and pass its path")
    with open_csv(path, name) as fh:
        return _read(fh, name, features, target)


def _read(fh: TextIO, name: str, features: list[str] | None, target: str | None) -> TextRows:
    reader = csv.reader(fh)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
    except UnicodeDecodeError as exc:
        raise DataError.in_file(name, f"not UTF-8 text (byte {exc.start})") from None
    if not header:
        raise DataError.in_file(name, "the file is empty; expected a header row and data rows")
    index = {h: i for i, h in enumerate(header)}
    listing = f"the columns are: {', '.join(header)}"
    if target is not None and target not in index:
        raise DataError.in_file(name, f"no target column '{target}'"
                                f"{did_you_mean(target, header)}; {listing}", 1)
    wanted = features if features is not None else [h for h in header if h != target]
    for f in wanted:
        if f not in index:
            raise DataError.in_file(name, f"no feature column '{f}'{did_you_mean(f, header)}; "
                                    f"{listing}", 1)
    cells: dict[str, list[str]] = {f: [] for f in wanted}
    lines: list[int] = []
    targets: list[str] = []
    width = len(header)
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise DataError.in_file(name, f"not valid CSV: {exc}", reader.line_num) from None
        except UnicodeDecodeError as exc:
            raise DataError.in_file(name, f"not UTF-8 text (byte {exc.start})") from None
        if row is None:
            break
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise DataError.in_file(name, f"expected {width} fields as in the header, found "
                                    f"{len(row)}", reader.line_num)
        lines.append(reader.line_num)
        for f in wanted:
            cells[f].append(row[index[f]].strip())
        if target is not None:
            targets.append(row[index[target]].strip())
    if not lines:
        raise DataError.in_file(name, "no data rows after the header")
    return TextRows(name, {f: np.asarray(v, dtype=str) for f, v in cells.items()},
                    np.asarray(lines), np.asarray(targets, dtype=str) if target else None)


def _number(text: str) -> float | None:
    """The finite number a cell holds, or None. As the numeric reader: no 1_000, no nan."""
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numeric_cell(cell: str, column: str, rows: TextRows, r: int, missing: Missing) -> float:
    value = _number(cell)
    if value is not None:
        return value
    if not is_missing(cell):
        raise DataError.in_file(rows.name, f"column '{column}': '{cell}' is not a number, but "
                                "the column is numeric", int(rows.lines[r]),
                                hint="to treat it as categories, set data.columns."
                                f"{column}: categorical")
    if missing == "error":
        what = "is empty" if not cell else f"{cell} is not a finite number"
        raise DataError.in_file(rows.name, f"column '{column}' {what}", int(rows.lines[r]),
                                hint=MISSING_HINT)
    return math.nan


def _numbers(cells: np.ndarray) -> np.ndarray | None:
    """float64 of a column whose every cell is a finite number, by numpy's parser (as fast as
    the numeric reader's); None otherwise, for the cell-by-cell reading that names the cell."""
    if "_" in "".join(cells.tolist()):
        return None
    try:
        values = cells.astype(np.float64)
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def _has_text(cells: np.ndarray) -> bool:
    """Whether any cell is neither a number nor missing."""
    if _numbers(cells) is not None:
        return False
    return any(not is_missing(c) and _number(c) is None for c in np.unique(cells).tolist())


# --- the plan: types from the config or the values, vocabularies from the training rows ----

def column_types(rows: TextRows, declared: dict[str, Column] | None) -> dict[str, Column]:
    """Each feature column's type: as data.columns declares it, else categorical when any of
    its cells is text (not a number, not missing)."""
    declared = declared or {}
    for name in declared:
        if name not in rows.cells:
            raise ConfigError.at(("data", "columns", name), f"'{name}' is not a feature column"
                                 f"{did_you_mean(name, rows.cells)}; the feature columns are: "
                                 f"{', '.join(rows.cells)}", key=True)
    types = {}
    for name, cells in rows.cells.items():
        if name in declared:
            types[name] = declared[name]
        else:
            types[name] = Column(type="categorical" if _has_text(cells) else "numeric")
    return types


def embedding_dim(values: int) -> int:
    # fast.ai's rule of thumb, 1.6 * n^0.56, capped: 3 values -> 3, 100 -> 21, 10000 -> 50.
    return max(2, min(50, round(1.6 * values ** 0.56)))


def fit_plan(train: TextRows, types: dict[str, Column]) -> TablePlan:
    """Vocabularies from the training rows only: a value seen only in validation or test rows
    is out of vocabulary, as a new value at predict time would be."""
    columns = []
    for name, cells in train.cells.items():
        spec = types[name]
        if spec.type == "numeric":
            columns.append(ColumnPlan(name, "numeric"))
            continue
        present = np.unique(cells[cells != ""]).tolist()
        if not present:
            raise DataError.in_file(train.name, f"column '{name}' has no values in the "
                                    "training rows, so it has no categories to learn",
                                    hint="drop the column from data.features")
        numbers = [_number(c) for c in present]
        integer = all(n is not None and n.is_integer() and abs(n) < 2 ** 53 for n in numbers)
        values = "integer" if integer else "string"
        plan = ColumnPlan(name, "categorical", values)
        vocabulary = tuple(sorted({plan.key(c) for c in present}))
        encoding = spec.encoding or "one_hot"
        dim = (spec.embedding_dim or embedding_dim(len(vocabulary))
               if encoding == "embedding" else 0)
        columns.append(ColumnPlan(name, "categorical", values, vocabulary, encoding, dim))
    return TablePlan(columns)


def read_plan(run_dir: Path) -> TablePlan | None:
    """The run's columns.json, or None for a run without categorical columns."""
    import json

    path = run_dir / COLUMNS
    if not path.is_file():
        return None
    try:
        return TablePlan.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError.in_file(str(path), f"cannot read it: {exc}") from None


# --- the dataset ---------------------------------------------------------------------------

@dataclass
class TableFiles:
    """A table's files read as text (missing values dropped with data.missing: drop), before
    the split; dataset.load_dataset splits them and fit_table encodes them."""

    texts: dict[str, TextRows]  # by part: main, and validation/test when in files of their own
    targets: dict[str, Table]  # each part's targets (y, and labels when text), as read_csv's
    names: dict[str, str]  # each part's file, as errors name it
    types: dict[str, Column]  # each feature column's type
    missing: Missing
    dropped: int = 0

    def fingerprint(self) -> str:
        """sha256 of the cells as read (after dropping): the same files give the same one."""
        h = hashlib.sha256()
        for part, rows in self.texts.items():
            for name, cells in rows.cells.items():
                h.update(name.encode() + b"\0" + "\x1f".join(cells.tolist()).encode() + b"\0")
            h.update(np.ascontiguousarray(self.targets[part].y).tobytes())
        return "sha256:" + h.hexdigest()


def read_table(cfg: CsvData, base_dir: Path, missing: Missing) -> TableFiles:
    """Every file of the config as text, the column types, and the targets."""
    texts: dict[str, TextRows] = {}
    names: dict[str, str] = {}
    for part, where in data_files(cfg).items():
        names[part] = "<stdin>" if where == "-" else where
        features = cfg.features or (list(texts["main"].cells) if texts else None)
        texts[part] = read_rows(local_path(where, base_dir), where, features, cfg.target)
    types = column_types(texts["main"], cfg.columns)
    # Missing cells are found with a vocabulary-free encoding (every value out of vocabulary):
    # the vocabulary comes from the training rows, which are known only after dropping.
    blank = TablePlan([ColumnPlan(n, t.type, "string") for n, t in types.items()])
    files = TableFiles({}, {}, names, types, missing)
    for part, rows in texts.items():
        labels = _labels(rows)
        y = _targets(rows, cfg.target, missing, labels)
        keep = np.isfinite(y)
        if missing == "drop":
            keep &= np.isfinite(blank.encode(rows, missing)).all(axis=1)
        else:
            blank.encode(rows, missing)  # an error naming the first missing cell's line
        if not keep.any():
            raise DataError.in_file(names[part], f"every one of its {len(keep)} rows has a "
                                    "missing value; nothing is left after data.missing: drop")
        files.dropped += int(len(keep) - keep.sum())
        files.texts[part] = rows.take(np.flatnonzero(keep))
        y = y[keep]
        files.targets[part] = Table(np.zeros((len(y), 0), np.float32),
                                    y.astype(np.int64) if labels is not None else y, [], labels)
    return files


def fit_table(files: TableFiles, rows: dict[str, np.ndarray], cfg: CsvData,
              ) -> tuple[TablePlan, dict[str, np.ndarray], dict[str, np.ndarray],
                         np.ndarray | None]:
    """(plan, x and y by split, fill values) for the main file's rows of each split (and the
    files of their own). Vocabularies, fill values and normalization: training rows only."""
    main, y = files.texts["main"], files.targets["main"].y
    split = {part: (main.take(index), y[index]) for part, index in rows.items()}
    for part in ("validation", "test"):
        if part in files.texts:
            split[part] = (files.texts[part], files.targets[part].y)
    plan = fit_plan(split["train"][0], files.types)
    xs = {part: plan.encode(text, files.missing) for part, (text, _) in split.items()}
    policy = policy_name(cfg.missing)
    fill = fill_values(policy, getattr(cfg.missing, "fill", None), xs["train"], plan.names,
                       files.names["main"])
    if fill is not None:
        xs = {part: Preprocessing(policy, fill).fill_missing(x) for part, x in xs.items()}
    if plan.numeric:
        plan.normalization = fit_normalization(cfg.normalize, xs["train"][:, plan.numeric])
    return plan, xs, {part: ys for part, (_, ys) in split.items()}, fill


def notes(plan: TablePlan, dropped: int) -> list[str]:
    """What the terminal says about the table after training."""
    out = [f"categorical columns: {plan.describe()}"] if plan.describe() else []
    if dropped:
        out.append(f"dropped {dropped} row{'s' if dropped != 1 else ''} with missing values "
                   "(data.missing: drop)")
    return out


def _labels(rows: TextRows) -> list[str] | None:
    """Sorted class names when a target cell holds text, else None (numbers)."""
    if not _has_text(rows.targets):
        return None
    return [str(t) for t in np.unique(rows.targets[rows.targets != ""])]


def _targets(rows: TextRows, target: str, missing: Missing,
             labels: list[str] | None = None) -> np.ndarray:
    """Target cells -> float values, or indices into ``labels``; NaN for a missing one with
    ``drop``, an error naming its line otherwise."""
    if labels is None:
        values = _numbers(rows.targets)
        if values is not None:
            return values
    index = {label: i for i, label in enumerate(labels or [])}
    y = np.empty(len(rows.targets), dtype=np.float64)
    for r, cell in enumerate(rows.targets.tolist()):
        value = index.get(cell) if labels is not None else _number(cell)
        if value is None:
            if missing == "drop":
                value = math.nan
            else:
                what = "is empty" if not cell else f"{cell} is not a finite number"
                raise DataError.in_file(rows.name, f"column '{target}': the target {what}",
                                        int(rows.lines[r]), hint="a missing target cannot "
                                        "be filled in; set data.missing: drop to drop such rows")
        y[r] = value
    return y


# --- the use side: files of a trained table run --------------------------------------------

def read_labeled_rows(plan: TablePlan, path: str, name: str, target: str,
                      missing: Missing) -> Table:
    """A labeled file for eval: the plan's columns encoded, the targets as read_csv gives them
    (values, or indices into the file's own sorted labels)."""
    rows = read_rows(path, name, plan.names, target)
    labels = _labels(rows)
    y = _targets(rows, target, missing, labels)
    if labels is not None and missing != "drop":
        y = y.astype(np.int64)
    return Table(plan.encode(rows, missing), y, plan.names, labels)


def read_input_rows(plan: TablePlan, path: str, name: str, missing: Missing) -> np.ndarray:
    """The plan's columns of a file for predict (the target may be absent), encoded."""
    return plan.encode(read_rows(path, name, plan.names, None), missing)


# --- the models ----------------------------------------------------------------------------

def _stems(plan: TablePlan) -> list[str]:
    """Each column's name as layer names carry it: readable ('unit price' -> 'unit_price'),
    and unique, as Keras needs (a second 'a_b' from 'a/b' gets its position appended)."""
    stems: list[str] = []
    for j, column in enumerate(plan.columns):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", column.name)
        taken = set(stems) | {c.name for c in plan.columns if c is not column}
        stems.append(stem if stem not in taken or stem == column.name else f"{stem}_{j}")
    return stems


# build_model's layer that joins the encoded columns, and the names of each categorical
# column's encoding layer: explain splits a table model where its encoding ends.
JOINED = "features"
ENCODING_LAYERS = ("one_hot_", "embed_")


def encoded_widths(plan: TablePlan) -> list[tuple[int, int]]:
    """(column index, units) of each input column after encoding, in the order build_model
    joins them: the numeric columns (one unit each), then each categorical column (its one-hot
    units, the out-of-vocabulary bucket first, or its embedding vector)."""
    return [(j, 1) for j in plan.numeric] + [
        (j, c.embedding_dim if c.encoding == "embedding" else len(c.vocabulary) + 1)
        for j, c in enumerate(plan.columns) if c.type == "categorical"]


def build_model(model: ModelConfig, plan: TablePlan, after: list[Any] | tuple = ()) -> Any:
    """The trained model: the encoded matrix -> one-hot units, embeddings and normalized
    numbers, concatenated -> the config's layers -> ``after`` (such as the target scaling's
    inverse). Built-in layers and keras.ops only."""
    from nntrain.model import _first_line, build_layers
    from nntrain.tf import import_keras

    keras = import_keras()
    ops = keras.ops
    x = keras.Input(shape=(len(plan.columns),), name="columns")
    parts = []
    stems = _stems(plan)
    if plan.numeric:
        numbers = ops.take(x, plan.numeric, axis=1)
        if plan.normalization is not None:
            numbers = plan.normalization.layer(keras)(numbers)
        parts.append(numbers)
    for j, column in enumerate(plan.columns):
        if column.type != "categorical":
            continue
        ids = ops.cast(x[:, j], "int32")
        tokens = len(column.vocabulary) + 1  # index 0 is the out-of-vocabulary bucket
        if column.encoding == "embedding":
            parts.append(keras.layers.Embedding(tokens, column.embedding_dim,
                                                name=f"{ENCODING_LAYERS[1]}{stems[j]}")(ids))
        else:
            parts.append(keras.layers.CategoryEncoding(
                tokens, output_mode="one_hot", name=f"{ENCODING_LAYERS[0]}{stems[j]}")(ids))
    h = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=JOINED)(parts)
    for i, spec in enumerate(model.layers):
        path = ("model", "layers", i)
        for layer in build_layers(keras, spec, path):
            try:
                h = layer(h)
            except (ValueError, TypeError) as exc:
                raise ConfigError.at(path, f"cannot add {type(layer).__name__} here: "
                                     f"{_first_line(exc)}") from None
    for layer in after:
        h = layer(h)
    return keras.Model(x, h, name=CORE)


def raw_model(plan: TablePlan, core: Any) -> Any:
    """The model to save: raw rows (a dict of columns: numbers, strings or integers) ->
    StringLookup/IntegerLookup with the plan's vocabularies -> the trained model."""
    from nntrain.tf import import_keras

    keras = import_keras()
    ops = keras.ops
    inputs: dict[str, Any] = {}
    encoded = []
    for column, stem in zip(plan.columns, _stems(plan)):
        dtype = {"float": "float32", "integer": "int64", "string": "string"}[column.values]
        # Keras matches a dict's keys to the inputs' names; names cannot hold '/'.
        name = column.name if "/" not in column.name else stem
        inp = keras.Input(shape=(), dtype=dtype, name=name)
        inputs[column.name] = inp
        if column.values == "string":
            ids = keras.layers.StringLookup(vocabulary=list(column.vocabulary),
                                            name=f"lookup_{stem}")(inp)
        elif column.values == "integer":
            # The out-of-vocabulary token must not be a value: one below the smallest.
            ids = keras.layers.IntegerLookup(vocabulary=list(column.vocabulary),
                                             oov_token=min(column.vocabulary) - 1,
                                             name=f"lookup_{stem}")(inp)
        else:
            ids = inp
        encoded.append(ops.cast(ids, "float32"))
    return keras.Model(inputs, core(ops.stack(encoded, axis=1)), name="nntrain_table_model")


def core_of(model: Any) -> Any:
    """The trained model inside a saved raw-row model."""
    return model.get_layer(CORE)
