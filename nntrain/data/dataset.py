"""The rows of a run, split: ``load_dataset`` draws them (generate) or reads them (CSV, NPZ,
NPY, with separate validation and test files), or hands off to stream.py (data.stream),
tabular.py (categorical columns) and images.py (pictures); then handles missing values and
learns the normalization from the training rows. A Dataset is what every later stage takes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from nntrain.config.schema import CsvData, GeneratedData, ImageData, NpyData, NpzData, Split
from nntrain.data import synthetic
from nntrain.data.arrays import read_npy, read_npz
from nntrain.data.csvfile import Missing, Table, TextFeature, read_csv
from nntrain.data.preprocess import Preprocessing, fill_values, fit_normalization, policy_name
from nntrain.data.sources import (DataConfig, data_files, local_path,
                                  require_files)
from nntrain.data import stream, tabular
from nntrain.errors import DataError
from nntrain.sizes import check_generated

SPLITS = ("train", "validation", "test")
# Class names in index order: text labels, or the integers a numeric target used
# (see Dataset.index_labels).
Labels = Union[list[str], list[int]]
# Rows per batch when a split is evaluated: bigger batches than training's give the same
# numbers in fewer steps.
EVAL_ROWS = 1024


def batch_rows(x: Any, rows: int) -> int:
    """``rows`` per batch of ``x``, or fewer for pictures, which are decoded a batch at a time:
    as many as images.BATCH_BYTES of pixels hold, so memory does not grow with the folder."""
    return x.batch_rows(rows) if hasattr(x, "batch_rows") else rows


def evaluation_batch(x: Any, batch_size: int) -> int:
    """Rows per batch for evaluating ``x`` (training and ``nntrain eval`` alike, so that they
    agree): EVAL_ROWS or fewer (batch_rows), and never fewer than training's batch_size."""
    return max(batch_size, batch_rows(x, EVAL_ROWS))


@dataclass
class Dataset:
    """All rows of a run, already split. y holds int64 class indices or float32 values.

    For streamed data (``data.stream: true``) the x_* and y_* are ``stream.StreamedRows``:
    len() and .shape work, and ``inputs`` reads the rows from the file.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    labels: Labels | None = None  # the user's labels by class index; None: indices as read
    fingerprint: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    notes: list[str] = field(default_factory=list)
    # (task, classes) as fit_targets encoded the targets; streamed rows are encoded as read.
    target_encoding: tuple[str, int | None] | None = None
    # tabular.TablePlan when the table has categorical columns: how x encodes the raw cells.
    table: Any = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def streamed(self) -> bool:
        return not isinstance(self.x_train, np.ndarray)

    def split(self, name: str) -> tuple[Any, Any]:
        """(x, y) of 'train', 'validation' or 'test'."""
        suffix = {"train": "train", "validation": "val", "test": "test"}[name]
        return getattr(self, f"x_{suffix}"), getattr(self, f"y_{suffix}")

    def all_targets(self) -> np.ndarray:
        """Every target value; for streamed rows, the few that decide fit_targets's checks
        (the smallest, the largest and the first non-integer one)."""
        if self.streamed:
            return self.y_train.summary
        return np.concatenate([self.y_train, self.y_val, self.y_test])

    def distinct_targets(self) -> np.ndarray | None:
        """The sorted distinct target values; None for streamed rows with too many of them to
        keep (see stream.MAX_LABELS)."""
        if self.streamed:
            return self.y_train.distinct
        return np.unique(self.all_targets())

    def index_labels(self, n_out: int | None) -> None:
        """Integer labels are class indices as they are when they fit the output: 0..n_out-1,
        or any that are 0 or more when n_out (the output units) is unknown. Others (-1 and 1;
        1, 5 and 9 for 3 units) are mapped to 0..k-1 in sorted order, and the labels keep the
        user's numbers so that labels.json, eval and predict speak them. Streamed rows are
        mapped as read."""
        y = self.all_targets()
        if self.labels is not None or not y.size:
            return
        low, high = float(y.min()), float(y.max())
        if low >= 0 and (n_out is None or high < n_out):
            return
        values = self.distinct_targets()
        if values is None:
            raise DataError(f"the class labels run from {low:g} to {high:g}, not 0 to "
                            f"{n_out - 1 if n_out else 'k-1'}, and have more than "
                            f"{stream.MAX_LABELS:,} distinct values to map to class indices; "
                            "use labels 0, 1, ... (one per class), or set data.stream: false")
        self.labels = [int(v) for v in values]
        shown = ", ".join(map(str, self.labels[:10])) + (", ..." if len(values) > 10 else "")
        self.notes.append(f"class labels {shown} are mapped to class indices 0 to "
                          f"{len(values) - 1} (the run's labels.json records them)")
        if self.streamed:
            return
        for name in ("y_train", "y_val", "y_test"):
            setattr(self, name, np.searchsorted(values, getattr(self, name)).astype(np.int64))

    @property
    def numeric_labels(self) -> list[int] | None:
        """The labels when they are numbers mapped by index_labels, else None."""
        if self.labels and not isinstance(self.labels[0], str):
            return self.labels
        return None

    def encode_targets(self, task: str, n_classes: int | None) -> None:
        """Targets as the loss wants them: float32 values, 0/1 floats, int64 indices or
        one-hot rows ('regression', 'binary', 'multiclass', 'onehot')."""
        self.target_encoding = (task, n_classes)
        if self.streamed:
            return
        for name in ("y_train", "y_val", "y_test"):
            y = getattr(self, name)
            if task == "regression":
                y = y.astype(np.float32)
            elif task == "onehot":
                y = np.eye(n_classes, dtype=np.float32)[y.astype(np.int64)]
            elif task == "binary":
                y = y.astype(np.int64).astype(np.float32)
            else:
                y = y.astype(np.int64)
            setattr(self, name, y)

    def inputs(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
               skip: int = 0) -> dict[str, Any]:
        """Keyword arguments for model.fit, evaluate or predict on one split: x, y and
        batch_size for arrays (in order: the caller orders rows itself), or for streamed data
        {x: a tf.data pipeline} over the split's rows in the file, shuffled with ``seed`` when
        ``shuffle``, its first ``skip`` batches left out (for resuming mid-epoch)."""
        x, y = self.split(split)
        if not self.streamed:
            return {"x": x, "y": y, "batch_size": batch_size}
        if hasattr(x, "pipeline"):  # pictures: data/images.py
            data = x.pipeline(batch_size, shuffle=shuffle, seed=seed,
                              encoding=self.target_encoding)
            return {"x": data.skip(skip) if skip else data}
        data = stream.pipeline(x, batch_size, shuffle=shuffle, seed=seed,
                               encoding=self.target_encoding, fill=self.preprocessing.fill,
                               labels=self.numeric_labels)
        return {"x": data.skip(skip) if skip else data}


def fingerprint(x: np.ndarray, y: np.ndarray, *more: np.ndarray) -> str:
    """sha256 of the rows as read: the same data gives the same fingerprint."""
    h = hashlib.sha256()
    for a in (x, y, *more):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def load_dataset(cfg: DataConfig, seed: int, base_dir: Path,
                 stratify_default: bool = False) -> Dataset:
    """Read or draw the rows named by the config, split them, handle missing values (the
    config's policy) and learn the normalization from the training rows.

    The same config, seed and files give the same rows, so eval and predict recreate a run's
    splits with ``load_dataset(config.data, config.training.seed, base_dir,
    stratify_default=task != "regression")`` followed by ``targets.fit_targets`` (which encodes
    the targets), x_test included and missing values already handled. The normalization is the
    model's first layer: never apply it again. For new rows, apply
    ``Preprocessing.from_json(run_dir / "preprocessing.json").fill_missing(x)`` when the run has
    that file. With ``data.stream`` the splits stay in the file: use ``ds.inputs("test", n)``.
    """
    if isinstance(cfg, CsvData) and cfg.stream:
        return _streamed(cfg, seed, base_dir)
    if isinstance(cfg, ImageData):
        return _pictures(cfg, seed, base_dir, classification=stratify_default)
    if isinstance(cfg, CsvData) and cfg.columns:
        return _table(cfg, seed, base_dir, stratify_default)
    policy = policy_name(getattr(cfg, "missing", "error"))
    try:
        tables, names = _read_tables(cfg, seed, base_dir, _parser_missing(policy))
    except TextFeature:
        # A text cell in a feature column: a categorical column, read as a table.
        return _table(cfg, seed, base_dir, stratify_default)
    labels = _merge_labels(tables, names)
    raw = [a for t in tables.values() for a in (t.x, t.y)]
    dropped = 0
    if policy == "drop":
        for part, table in tables.items():
            tables[part], n = _drop_missing(table, names[part])
            dropped += n
    if labels is not None:
        for table in tables.values():
            table.y = table.y.astype(np.int64)
    main = tables["main"]
    x, y = main.x, main.y
    stratify = cfg.split.stratify if cfg.split.stratify is not None else stratify_default
    parts = split_rows(len(x), cfg.split, seed, y if stratify else None)
    train, val, test = (np.asarray(p, dtype=np.int64) for p in parts)
    split = {"train": (x[train], y[train]), "validation": (x[val], y[val]),
             "test": (x[test], y[test])}
    for part in ("validation", "test"):
        if part in tables:
            split[part] = (tables[part].x, tables[part].y)
    fill = fill_values(policy, getattr(getattr(cfg, "missing", None), "fill", None),
                       split["train"][0], main.feature_names, names["main"])
    if fill is not None:
        pre = Preprocessing(policy, fill)
        split = {k: (pre.fill_missing(xs), ys) for k, (xs, ys) in split.items()}
    norm = fit_normalization(getattr(cfg, "normalize", "none"), split["train"][0])
    ds = Dataset(*split["train"], *split["validation"], *split["test"], main.feature_names,
                 labels, fingerprint(*raw), _describe(names),
                 preprocessing=Preprocessing(policy, fill, norm, dropped))
    if dropped:
        ds.notes.append(f"dropped {dropped} row{'s' if dropped != 1 else ''} with missing "
                        "values (data.missing: drop)")
    return ds


def _streamed(cfg: CsvData, seed: int, base_dir: Path) -> Dataset:
    """A Dataset whose splits stay in the file (data.stream): see stream.py."""
    splits, names, digest, source, preprocessing = stream.load_streamed(cfg, seed, base_dir)
    ds = Dataset(*splits, names, None, digest, source, preprocessing=preprocessing)
    if preprocessing.dropped:
        ds.notes.append(f"dropped {preprocessing.dropped} row"
                        f"{'s' if preprocessing.dropped != 1 else ''} with missing values "
                        "(data.missing: drop)")
    return ds


def _pictures(cfg: ImageData, seed: int, base_dir: Path, classification: bool) -> Dataset:
    """Pictures in class folders (data/images.py): split as every source's rows are, then
    read from disk in batches."""
    from nntrain.data.images import read_pictures

    require_files(cfg, base_dir)
    pictures = read_pictures(cfg, local_path(cfg.path, base_dir), classification=classification)
    stratify = cfg.split.stratify if cfg.split.stratify is not None else classification
    parts = split_rows(len(pictures.labels), cfg.split, seed,
                       pictures.labels if stratify else None)
    ds = Dataset(*(rows for part in parts for rows in pictures.rows(part)), [],
                 list(pictures.folder.classes), pictures.fingerprint, pictures.source)
    ds.notes += pictures.notes
    return ds


def _table(cfg: CsvData, seed: int, base_dir: Path, stratify_default: bool) -> Dataset:
    """A CSV file with text cells or data.columns (see data/tabular.py), split as any file is;
    the vocabularies and the normalization come from the training rows."""
    policy = policy_name(cfg.missing)
    files = tabular.read_table(cfg, base_dir, _parser_missing(policy))
    labels = _merge_labels(files.targets, files.names)
    y = files.targets["main"].y
    stratify = cfg.split.stratify if cfg.split.stratify is not None else stratify_default
    parts = split_rows(len(y), cfg.split, seed, y if stratify else None)
    plan, xs, ys, fill = tabular.fit_table(
        files, {part: np.asarray(p, dtype=np.int64) for part, p in zip(SPLITS, parts)}, cfg)
    ds = Dataset(xs["train"], ys["train"], xs["validation"], ys["validation"], xs["test"],
                 ys["test"], plan.names, labels, files.fingerprint(), _describe(files.names),
                 preprocessing=Preprocessing(policy, fill, None, files.dropped), table=plan)
    ds.notes += tabular.notes(plan, files.dropped)
    return ds


def _parser_missing(policy: str) -> Missing:
    return "error" if policy == "error" else "drop" if policy == "drop" else "keep"


def _read_tables(cfg: DataConfig, seed: int, base_dir: Path,
                 missing: Missing) -> tuple[dict[str, Table], dict[str, str]]:
    """The main file's rows and those of separate validation and test files, by part."""
    if isinstance(cfg, GeneratedData):
        check_generated(cfg.samples, synthetic.n_features(cfg.generator, cfg.features))
        x, y = synthetic.generate(cfg.generator, cfg.samples, cfg.features, cfg.classes,
                                  cfg.noise, cfg.seed if cfg.seed is not None else seed)
        names = [f"x{i}" for i in range(x.shape[1])]
        return {"main": Table(x, y, names, None)}, {"main": f"generate:{cfg.generator}"}
    require_files(cfg, base_dir)
    tables: dict[str, Table] = {}
    names: dict[str, str] = {}
    for part, where in data_files(cfg).items():
        if isinstance(cfg, NpyData):
            x_path, y_path = where
            names[part] = f"{x_path}, {y_path}"
            tables[part] = read_npy(local_path(x_path, base_dir), local_path(y_path, base_dir),
                                    cfg.features, x_path, y_path, missing=missing)
        elif isinstance(cfg, NpzData):
            names[part] = "<stdin>" if where == "-" else where
            tables[part] = read_npz(local_path(where, base_dir), cfg.x, cfg.y, cfg.features,
                                    where, missing=missing)
        else:
            names[part] = "<stdin>" if where == "-" else where
            # The other files' columns by the main file's names, in its order.
            features = cfg.features or (tables["main"].feature_names if tables else None)
            tables[part] = read_csv(local_path(where, base_dir), cfg.target, features,
                                    name=where, missing=missing)
    widths = {tuple(t.x.shape[1:]) for t in tables.values()}
    if len(widths) > 1:
        part = next(p for p, t in tables.items() if t.x.shape[1:] != tables["main"].x.shape[1:])
        raise DataError.in_file(names[part], f"has inputs of shape {list(tables[part].x.shape[1:])}"
                                f" but {names['main']} has {list(tables['main'].x.shape[1:])}; "
                                "every file needs the same features")
    return tables, names


def _describe(names: dict[str, str]) -> str:
    extra = [f"{part}: {names[part]}" for part in ("validation", "test") if part in names]
    return names["main"] + (f" ({', '.join(extra)})" if extra else "")


def _merge_labels(tables: dict[str, Table], names: dict[str, str]) -> list[str] | None:
    """One label list for all files; each file's class indices renumbered into it."""
    with_labels = {p: t for p, t in tables.items() if t.labels is not None}
    if not with_labels:
        return None
    if len(with_labels) != len(tables):
        text = next(iter(with_labels))
        numeric = next(p for p in tables if p not in with_labels)
        raise DataError.in_file(names[numeric], f"the targets here are numbers, but in "
                                f"{names[text]} they are text labels; use the same kind of "
                                "labels in every file")
    labels = sorted(set().union(*(t.labels for t in with_labels.values())))
    index = {label: i for i, label in enumerate(labels)}
    for table in tables.values():
        mapping = np.asarray([index[label] for label in table.labels], dtype=np.float64)
        known = ~np.isnan(table.y.astype(np.float64))
        y = np.full(len(table.y), np.nan)
        y[known] = mapping[table.y[known].astype(np.int64)]
        table.y = y if not known.all() else y.astype(np.int64)
        table.labels = labels
    return labels


def _drop_missing(table: Table, name: str) -> tuple[Table, int]:
    keep = np.isfinite(table.x.reshape(len(table.x), -1)).all(axis=1)
    keep &= np.isfinite(table.y.astype(np.float64))
    if not keep.any():
        raise DataError.in_file(name, f"every one of its {len(keep)} rows has a missing value; "
                                "nothing is left after data.missing: drop")
    dropped = int(len(keep) - keep.sum())
    return Table(table.x[keep], table.y[keep], table.feature_names, table.labels), dropped


def split_rows(n: int, split: Split, seed: int,
               stratify_by: np.ndarray | None = None) -> tuple[list, list, list]:
    """Row indices for train, validation and test.

    Without shuffling the order is kept: training rows first, then validation, then test (the
    tutorial's first-80/last-20). With shuffling the permutation comes from the seed, and with
    stratification each class is split in the same proportions.
    """
    if not split.shuffle:
        n_test = _count(n, split.test)
        n_val = _count(n, split.validation)
        n_train = n - n_val - n_test
        _check_train(n_train, n)
        rows = list(range(n))
        return rows[:n_train], rows[n_train:n_train + n_val], rows[n_train + n_val:]
    rs = np.random.RandomState(seed)
    if stratify_by is None:
        groups = [rs.permutation(n)]
    else:
        classes = np.unique(stratify_by)
        groups = [rs.permutation(np.flatnonzero(stratify_by == c)) for c in classes]
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for g in groups:
        n_test = _count(len(g), split.test)
        n_val = _count(len(g), split.validation)
        test += g[:n_test].tolist()
        val += g[n_test:n_test + n_val].tolist()
        train += g[n_test + n_val:].tolist()
    _check_train(len(train), n)
    # Interleave the classes again so that no batch is all one class.
    order = rs.permutation(len(train))
    return [train[i] for i in order], sorted(val), sorted(test)


def _count(n: int, fraction: float) -> int:
    return int(round(n * fraction))


def _check_train(n_train: int, n: int) -> None:
    if n_train < 1:
        raise DataError(f"the split leaves no training rows out of {n}; lower data.split.test "
                        "or data.split.validation, or use more rows")
