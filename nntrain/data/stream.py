"""Streamed CSV data (``data.stream: true``): rows stay in the file and tf.data reads them in
batches while training, so memory stays flat however large the file grows.

Before training, one pass over the file in chunks (the same reader as for loaded files, so the
same line-numbered errors) checks every cell and counts the rows of each split, and gathers
what the rest of the run needs from the data: the label range and the distinct labels (up to
MAX_LABELS of them) for the task checks and the label mapping, the training rows' means for
``missing: mean``, and the normalization statistics.

Which split a row belongs to cannot depend on a permutation of all rows, so:

- ``split.shuffle: true`` (the default): row i (0-based, blank lines not counted) goes to test
  when hash(seed, i) < test, to validation when it is below test + validation, else to
  training. The hash is a fixed integer mix, so a row's split depends only on its position and
  the seed, and the fractions hold up to sampling noise (about 1/sqrt(rows)). Stratification is
  not available; in expectation every class is split in the configured proportions.
- ``split.shuffle: false``: the first rows train, then validation, then test, as for loaded
  files (the pre-pass counts the rows first).

The same rule runs in numpy (the pre-pass) and in TensorFlow (the pipeline). Rows dropped for
missing values (``missing: drop``) are dropped after it, so a row never changes split.
- ``validation_path`` / ``test_path``: those files are streamed whole.

Training rows are shuffled each epoch through a buffer of SHUFFLE_BUFFER rows.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nntrain.config.schema import CsvData, Split
from nntrain.data.csvfile import Columns, Missing, open_csv, read_chunks, read_header
from nntrain.data.preprocess import Preprocessing, normalization, policy_name
from nntrain.data.sources import data_files, local_path
from nntrain.errors import DataError

TRAIN, VALIDATION, TEST = 0, 1, 2
PARTS = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
# Rows held for shuffling the training rows: big enough to mix neighbouring rows well, small
# enough (a few MiB of text) that memory does not depend on the file.
SHUFFLE_BUFFER = 10_000
# Lines assigned to splits at a time in the pipeline.
BLOCK_LINES = 4096
# Distinct target values the pre-pass keeps, to map labels such as -1/1 to class indices: far
# more than any output layer has units, and a few hundred KiB at most. A regression target
# passes it within a chunk or two, and is then no longer collected.
MAX_LABELS = 10_000
_M32 = 0xFFFFFFFF


@dataclass
class StreamedRows:
    """Stands in for one split's x (or y) array while the rows stay in the file."""

    path: str  # absolute
    name: str  # as written in the config, for messages
    columns: Columns
    part: int | None  # TRAIN, VALIDATION or TEST of the file's rows; None: every row
    split: Split
    seed: int
    file_rows: int  # data rows in the whole file, for the ordered split
    rows: int  # rows in this split
    width: int | None  # features, or None for the targets
    missing: str = "error"
    summary: np.ndarray = field(default_factory=lambda: np.zeros(0))  # see all_targets
    distinct: np.ndarray | None = None  # see distinct_targets
    # The training rows' x only: per-feature (mean, min, max) from the pre-pass, which training
    # records for `nntrain explain` (data/baseline.py).
    stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows, self.width) if self.width is not None else (self.rows,)


def row_parts(index: np.ndarray, split: Split, seed: int, file_rows: int) -> np.ndarray:
    """TRAIN, VALIDATION or TEST for each row index (int64); the same rule as ``_tf_parts``."""
    if not split.shuffle:
        n_train, n_val = _ordered_counts(file_rows, split)
        return np.where(index < n_train, TRAIN, np.where(index < n_train + n_val, VALIDATION,
                                                         TEST))
    test, val = _thresholds(split)
    h = _mix(index.astype(np.int64), seed, np)
    return np.where(h < test, TEST, np.where(h < val, VALIDATION, TRAIN))


def _ordered_counts(n: int, split: Split) -> tuple[int, int]:
    n_test = int(round(n * split.test))
    n_val = int(round(n * split.validation))
    return n - n_test - n_val, n_val


def _thresholds(split: Split) -> tuple[int, int]:
    """Hash values below the first go to test, below the second to validation."""
    return (int(split.test * 2 ** 32), int((split.test + split.validation) * 2 ** 32))


def _mix(i: Any, seed: int, ops: Any) -> Any:
    """A 32-bit integer hash of (row index, seed), in int64 arithmetic that never overflows
    (values stay below 2**32, multipliers below 2**31), so numpy and TensorFlow agree."""
    s = (seed * 0x2545F491) & _M32
    if ops is np:
        h = (i & _M32) ^ s
        for shift, mult in ((16, 0x7FEB352D), (15, 0x5BD1E995), (16, 0x2C1B3C6D)):
            h = ((h ^ (h >> shift)) * mult) & _M32
        return h ^ (h >> 16)
    tf = ops
    band, xor, right = tf.bitwise.bitwise_and, tf.bitwise.bitwise_xor, tf.bitwise.right_shift
    h = xor(band(i, _M32), tf.constant(s, tf.int64))
    for shift, mult in ((16, 0x7FEB352D), (15, 0x5BD1E995), (16, 0x2C1B3C6D)):
        h = band(xor(h, right(h, shift)) * mult, _M32)
    return xor(h, right(h, 16))


# --- the pre-pass ------------------------------------------------------------------------

@dataclass
class _Stats:
    """Running per-feature statistics of the training rows (Chan et al.'s parallel update),
    over finite values only: NaN entries are those data.missing: mean fills in later."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def empty(cls, width: int) -> "_Stats":
        return cls(np.zeros(width), np.zeros(width), np.zeros(width),
                   np.full(width, np.inf), np.full(width, -np.inf))

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        ok = np.isfinite(x)
        n_b = ok.sum(axis=0).astype(np.float64)
        safe = np.where(ok, x, 0.0)
        mean_b = np.divide(safe.sum(axis=0), n_b, out=np.zeros_like(n_b), where=n_b > 0)
        m2_b = (np.where(ok, x - mean_b, 0.0) ** 2).sum(axis=0)
        n = self.count + n_b
        delta = mean_b - self.mean
        frac = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta ** 2 * self.count * frac
        self.count = n
        self.low = np.minimum(self.low, np.where(ok, x, np.inf).min(axis=0))
        self.high = np.maximum(self.high, np.where(ok, x, -np.inf).max(axis=0))


@dataclass
class _Scan:
    rows: dict[int, int]  # kept rows per part
    file_rows: int
    dropped: int
    low: float
    high: float
    fractional: float | None  # the first non-integer target, if any
    distinct: np.ndarray | None  # sorted distinct targets; None past MAX_LABELS of them
    stats: _Stats  # of the TRAIN rows


def _scan(path: str, name: str, cfg: CsvData, features: list[str] | None, seed: int,
          split: bool, file_rows: int, fill: float | None,
          missing: Missing) -> tuple[Columns, _Scan]:
    """One pass in chunks: every cell checked, rows counted per part, statistics of the
    training rows gathered. Without ``split`` (a validation or test file) every row counts as
    TRAIN: the caller uses the count only."""
    with open_csv(path, name) as fh:
        columns = read_header(fh, cfg.target, features, name)
        stats = _Stats.empty(len(columns.features))
        rows = {TRAIN: 0, VALIDATION: 0, TEST: 0}
        seen = dropped = 0
        low, high, fractional = math.inf, -math.inf, None
        distinct: np.ndarray | None = np.zeros(0)
        for chunk in read_chunks(fh, columns, name, missing, numeric_target=True):
            x, y = chunk.x, chunk.y
            seen = chunk.first_row + len(x)
            index = chunk.first_row + np.arange(len(x), dtype=np.int64)
            part = (row_parts(index, cfg.split, seed, file_rows) if split
                    else np.full(len(x), TRAIN))
            if missing == "drop":
                keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
                dropped += int(len(keep) - keep.sum())
                x, y, part = x[keep], y[keep], part[keep]
            if fill is not None:
                x = np.where(np.isfinite(x), x, np.float32(fill))
            stats.add(x[part == TRAIN])
            for p in rows:
                rows[p] += int((part == p).sum())
            if len(y):
                low, high = min(low, float(y.min())), max(high, float(y.max()))
                frac = np.flatnonzero(np.mod(y, 1) != 0)
                if fractional is None and frac.size:
                    fractional = float(y[frac[0]])
                if distinct is not None:
                    distinct = np.union1d(distinct, y)
                    distinct = distinct if distinct.size <= MAX_LABELS else None
    if seen == 0:
        raise DataError.in_file(name, "no data rows after the header")
    return columns, _Scan(rows, seen, dropped, low, high, fractional, distinct, stats)


def _count_rows(path: str, name: str, cfg: CsvData) -> int:
    """Data rows in the file (blank lines not counted), for the ordered split."""
    with open_csv(path, name) as fh:
        columns = read_header(fh, cfg.target, cfg.features, name)
        return sum(len(c.x) for c in read_chunks(fh, columns, name, "drop", fast=True,
                                                  numeric_target=True))


def _sha256(paths: list[str]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return "sha256:" + h.hexdigest()


def load_streamed(cfg: CsvData, seed: int, base_dir: Path
                  ) -> tuple[list[StreamedRows], list[str], str, str, Preprocessing]:
    """The pre-pass over every file: (x and y StreamedRows of train, validation and test, the
    feature names, the fingerprint, a description, the preprocessing learned). dataset.py
    makes the Dataset of them."""
    policy = policy_name(cfg.missing)
    missing: Missing = "error" if policy == "error" else "drop" if policy == "drop" else "keep"
    fill = cfg.missing.fill if policy == "fill" else None
    files = {part: (local_path(p, base_dir), p) for part, p in data_files(cfg).items()}
    path, name = files["main"]
    file_rows = _count_rows(path, name, cfg) if not cfg.split.shuffle else 0
    columns, main = _scan(path, name, cfg, cfg.features, seed, True, file_rows, fill, missing)
    scans = {"main": (columns, main)}
    for part in ("validation", "test"):
        if part in files:  # the main file's feature columns, by name, in any order
            scans[part] = _scan(*files[part], cfg, columns.feature_names, seed, False, 0, fill,
                                missing)
    stats = main.stats
    n_train = main.rows[TRAIN]
    if n_train == 0:
        raise DataError.in_file(name, f"the split leaves no training rows out of "
                                f"{main.file_rows}; lower data.split.test or "
                                "data.split.validation, or use more rows")
    fill_values = None
    if policy == "fill":
        fill_values = np.full(len(columns.features), fill, dtype=np.float64)
    elif policy == "mean":
        empty = np.flatnonzero(stats.count == 0)
        if empty.size:
            raise DataError.in_file(name, f"column '{columns.feature_names[empty[0]]}' has no "
                                    "values in the training rows, so data.missing: mean has "
                                    "nothing to take the mean of")
        fill_values = stats.mean.copy()
    norm = normalization(cfg.normalize, n_train, stats.mean, stats.m2, stats.low, stats.high)
    every = [scan for _, scan in scans.values()]
    summary = np.asarray([min(s.low for s in every), max(s.high for s in every)]
                         + [s.fractional for s in every if s.fractional is not None][:1])
    distinct = None if any(s.distinct is None for s in every) else \
        np.unique(np.concatenate([s.distinct for s in every]))
    distinct = distinct if distinct is None or distinct.size <= MAX_LABELS else None
    width = len(columns.features)

    def rows_of(part: str) -> tuple[StreamedRows, StreamedRows]:
        if part in scans:  # a file of its own: every row
            where, (cols, scan), which = files[part], scans[part], None
            count = scan.rows[TRAIN]
        else:
            where, cols, scan, which = files["main"], columns, main, PARTS[part]
            count = main.rows[PARTS[part]]
        common = dict(path=where[0], name=where[1], columns=cols, part=which,
                      split=cfg.split, seed=seed, file_rows=scan.file_rows, rows=count,
                      missing=missing, summary=summary, distinct=distinct)
        return StreamedRows(width=width, **common), StreamedRows(width=None, **common)

    dropped = sum(s.dropped for s in every)
    described = name + "".join(f", {p}: {files[p][1]}" for p in ("validation", "test")
                               if p in files)
    splits = [*rows_of("train"), *rows_of("validation"), *rows_of("test")]
    splits[0].stats = (stats.mean, stats.low, stats.high)
    return (splits, columns.feature_names, _sha256([p for p, _ in files.values()]),
            f"{described} (streamed)", Preprocessing(policy, fill_values, norm, dropped))


# --- the tf.data pipeline ----------------------------------------------------------------

def pipeline(rows: StreamedRows, batch_size: int, *, shuffle: bool, seed: int,
             encoding: tuple[str, int | None] | None, fill: np.ndarray | None,
             labels: list[int] | None = None) -> Any:
    """Batches of (x, y) read from the file: the split's rows, decoded by TensorFlow's CSV
    parser, missing values dropped or filled, targets encoded as fit_targets decided (numeric
    ``labels``, when given, mapped to their index: every target is one of them).

    Lines are picked for the split BLOCK_LINES at a time: a tf.data function call per line
    costs far more than the work it does.
    """
    from nntrain.tf import import_tensorflow

    tf = import_tensorflow()  # tf.data reads the file on either Keras backend

    columns = rows.columns
    select = sorted({*columns.features, columns.target})
    at = {c: i for i, c in enumerate(select)}
    task, n_classes = encoding or ("regression", None)
    fill_t = None if fill is None else tf.constant(fill, tf.float32)
    labels_t = None if labels is None else tf.constant(labels, tf.float64)

    def pick(count: Any, block: Any) -> tuple[Any, Any]:
        """The block's lines of this split; count: data rows before the block."""
        block = tf.boolean_mask(block, tf.strings.length(tf.strings.strip(block)) > 0)
        n = tf.size(block, out_type=tf.int64)
        if rows.part is not None:
            block = tf.boolean_mask(block, _tf_parts(count + tf.range(n), rows) == rows.part)
        return count + n, block

    # Doubles, cast to float32 afterwards, as the file reader does; an empty cell is NaN.
    defaults = [tf.constant([np.nan], tf.float64)] * len(select)

    def decode(lines: Any) -> tuple[Any, Any]:
        numbers = tf.io.decode_csv(lines, defaults, select_cols=select)
        x = tf.cast(tf.stack([numbers[at[c]] for c in columns.features], axis=1), tf.float32)
        y = numbers[at[columns.target]]
        if rows.missing == "drop":
            keep = tf.reduce_all(tf.math.is_finite(x), axis=1) & tf.math.is_finite(y)
            x, y = tf.boolean_mask(x, keep), tf.boolean_mask(y, keep)
        if fill_t is not None:
            x = tf.where(tf.math.is_finite(x), x, fill_t)
        return x, encode(y)

    def encode(y: Any) -> Any:
        if labels_t is not None:
            y = tf.cast(tf.searchsorted(labels_t, y), tf.float64)
        if task in ("regression", "binary"):
            return tf.cast(y, tf.float32)
        if task == "onehot":
            return tf.one_hot(tf.cast(y, tf.int64), n_classes, dtype=tf.float32)
        return tf.cast(y, tf.int64)

    lines = (tf.data.TextLineDataset(rows.path).skip(1).batch(BLOCK_LINES)
             .scan(tf.constant(0, tf.int64), pick).unbatch())
    if shuffle:
        lines = lines.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    data = lines.batch(batch_size).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if rows.missing == "drop":
        data = data.unbatch().batch(batch_size)  # whole batches again after dropping rows
    data = data.apply(tf.data.experimental.assert_cardinality(math.ceil(rows.rows / batch_size)))
    return data.prefetch(tf.data.AUTOTUNE)


def _tf_parts(i: Any, rows: StreamedRows) -> Any:
    """row_parts in TensorFlow ops, for one row index."""
    import tensorflow as tf

    split = rows.split
    if not split.shuffle:
        n_train, n_val = _ordered_counts(rows.file_rows, split)
        return tf.where(i < n_train, TRAIN, tf.where(i < n_train + n_val, VALIDATION, TEST))
    test, val = _thresholds(split)
    h = _mix(i, rows.seed, tf)
    return tf.where(h < test, TEST, tf.where(h < val, VALIDATION, TRAIN))
