"""Read a CSV file with a header row into float32 features and a target column.

Errors name the file and the line (``data.csv:3: column 'age': 'abc' is not a number``).
A UTF-8 byte-order mark, CRLF line endings and quoted numbers just work.

Files are read in chunks of lines. Each chunk goes to numpy's C parser (``numpy.loadtxt``)
first; a chunk it refuses, or one with a missing value, is read again by the exact reader (the
``csv`` module, cell by cell), which finds the line and says what is wrong with it. Both give
the same numbers: the fast path is only ever an optimization (see benchmarks/csv_loading.py).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import numpy as np

from nntrain.errors import DataError, did_you_mean
from nntrain.filecheck import not_regular

# Lines per chunk: big enough that numpy's per-call cost vanishes, small enough that a chunk's
# text and arrays stay a few tens of MiB whatever the file's size (streaming relies on it).
CHUNK_LINES = 1 << 16

# error: any missing value (empty cell, NaN, inf) is an error with its line.
# keep: missing features become NaN for the caller's policy; a missing target is an error.
# drop: missing features and targets become NaN; the caller drops those rows.
Missing = Literal["error", "keep", "drop"]

MISSING_HINT = "to accept missing values, set data.missing to drop, mean or {fill: VALUE}"


@dataclass
class Table:
    x: np.ndarray  # float32 (rows, features); NaN for missing values unless missing="error"
    y: np.ndarray  # float values, or int64 indices into `labels`; NaN only with missing="drop"
    feature_names: list[str]
    labels: list[str] | None  # class names when the target column held text


@dataclass(frozen=True)
class Columns:
    """The header and the columns the config picks from it."""

    header: list[str]
    features: list[int]
    target: int

    @property
    def feature_names(self) -> list[str]:
        return [self.header[i] for i in self.features]

    @property
    def target_name(self) -> str:
        return self.header[self.target]


@dataclass
class Chunk:
    """Consecutive data rows (blank lines skipped) of a file."""

    x: np.ndarray  # float32 (rows, features), NaN where missing
    y: np.ndarray  # float64 values or label ids, NaN where missing
    first_row: int  # 0-based index of the chunk's first data row in the file


class TextFeature(DataError):
    """A feature cell holds text: the table has a categorical column (see data/tabular.py)."""


class _TextTarget(Exception):
    """The target column holds text: read the file again, mapping labels to indices."""


def read_csv(path: str | Path, target: str, features: list[str] | None = None,
             name: str | None = None, *, missing: Missing = "error") -> Table:
    """Read a CSV file from disk, or from standard input when path is '-'."""
    name = name or str(path)
    if str(path) == "-":
        # Read once and kept: a target column with text labels means reading it twice.
        if hasattr(sys.stdin, "buffer"):
            data = sys.stdin.buffer.read()
            opener: Callable[[], TextIO] = lambda: io.TextIOWrapper(
                io.BytesIO(data), encoding="utf-8-sig", newline="")
        else:  # a text stream without bytes underneath (tests, embedding programs)
            text = sys.stdin.read()
            opener = lambda: io.StringIO(text)
        return _read(opener, target, features, "<stdin>", missing)
    return _read(lambda: open_csv(path, name), target, features, name, missing)


def parse_csv(fh: TextIO, target: str, features: list[str] | None, name: str, *,
              missing: Missing = "error") -> Table:
    """Read an open text file with the exact reader only (no numpy fast path)."""
    text = fh.read()
    return _read(lambda: io.StringIO(text), target, features, name, missing, fast=False)


def open_csv(path: str | Path, name: str) -> TextIO:
    """Open a data file for reading, with one-line errors."""
    if (why := not_regular(path)) is not None:
        raise DataError.in_file(name, why)
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError.in_file(name, "no such data file") from None
    except IsADirectoryError:
        raise DataError.in_file(name, "is a directory, not a CSV file") from None
    except OSError as exc:
        raise DataError.in_file(name, f"cannot read it: {exc.strerror}") from None


def _read(opener: Callable[[], TextIO], target: str, features: list[str] | None, name: str,
          missing: Missing, fast: bool = True) -> Table:
    """Numbers in the target column unless a cell holds text; then the file again, with the
    target's cells as class labels."""

    def chunks_of(labels: dict[str, int] | None) -> tuple[Columns, list[Chunk]]:
        with opener() as fh:
            columns = read_header(fh, target, features, name)
            return columns, list(read_chunks(fh, columns, name, missing, labels=labels,
                                             fast=fast))

    labels: dict[str, int] | None = None
    try:
        columns, chunks = chunks_of(labels)
    except _TextTarget:
        labels = {}
        columns, chunks = chunks_of(labels)
    if not chunks:
        raise DataError.in_file(name, "no data rows after the header")
    x = np.concatenate([c.x for c in chunks])
    y = np.concatenate([c.y for c in chunks])
    if labels is None:
        return Table(x, y, columns.feature_names, None)
    # Label ids are in order of appearance; class indices are the labels in sorted order.
    names = sorted(labels)
    rank = np.empty(len(names), dtype=np.float64)
    rank[[labels[n] for n in names]] = np.arange(len(names))
    known = ~np.isnan(y)
    y[known] = rank[y[known].astype(np.int64)]
    return Table(x, y if missing == "drop" else y.astype(np.int64), columns.feature_names, names)


def read_header(fh: TextIO, target: str, features: list[str] | None, name: str) -> Columns:
    """Read the header line and find the target and feature columns in it."""
    line = _decode(name, fh.readline)
    if not line:
        raise DataError.in_file(name, "the file is empty; expected a header row and data rows")
    header = [h.strip().lstrip("\ufeff") for h in next(csv.reader([line]), [])]
    index = {h: i for i, h in enumerate(header)}
    if len(index) < len(header):  # which 'x0' would be meant is anybody's guess
        twice = sorted({h for h in header if header.count(h) > 1})
        raise DataError.in_file(name, f"the header names a column more than once: "
                                f"{', '.join(repr(h) for h in twice)}; column names must be "
                                "unique", 1)
    if target not in index:
        raise DataError.in_file(
            name, f"no target column '{target}'{did_you_mean(target, header)}; the columns "
            f"are: {', '.join(header)}", 1)
    wanted = features if features is not None else [h for h in header if h != target]
    for f in wanted:
        if f not in index:
            raise DataError.in_file(
                name, f"no feature column '{f}'{did_you_mean(f, header)}; the columns are: "
                f"{', '.join(header)}", 1)
    if not wanted:
        raise DataError.in_file(name, "no feature columns besides the target", 1)
    return Columns(header, [index[f] for f in wanted], index[target])


def read_chunks(fh: TextIO, columns: Columns, name: str, missing: Missing, *,
                labels: dict[str, int] | None = None, fast: bool = True,
                numeric_target: bool = False) -> Iterator[Chunk]:
    """The data rows after the header, CHUNK_LINES lines at a time.

    ``labels`` is None for a numeric target; a target cell with text then raises _TextTarget
    (or, with ``numeric_target``, a DataError). Otherwise text labels get ids in ``labels`` in
    order of appearance.
    """
    line = 2
    row = 0
    while True:
        lines = _decode(name, lambda: list(itertools.islice(fh, CHUNK_LINES)))
        if not lines:
            return
        chunk = _fast_chunk(lines, columns, labels) if fast else None
        if chunk is None:
            chunk = _exact_chunk(lines, line, columns, name, missing, labels, numeric_target)
        if len(chunk[0]):
            yield Chunk(chunk[0], chunk[1], row)
        line += len(lines)
        row += len(chunk[0])


def _decode(name: str, read: Callable[[], object]):
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise DataError.in_file(name, f"not UTF-8 text (byte {exc.start})") from None


def _fast_chunk(lines: list[str], columns: Columns,
                labels: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """numpy's C parser on a chunk; None when anything needs the exact reader's judgment."""
    if not any(line.strip() for line in lines):
        return None  # blank lines only: loadtxt would warn about an empty input
    width = len(columns.header)
    used = {*columns.features, columns.target}
    # Unused columns may hold anything (an id, a name); they are counted, never parsed.
    converters: dict[int, Callable[[str], float]] = {
        i: _ignore for i in range(width) if i not in used}
    if labels is not None:
        converters[columns.target] = lambda cell: _label_id(cell, labels)
    try:
        a = np.loadtxt(lines, delimiter=",", quotechar='"', comments=None, dtype=np.float64,
                       ndmin=2, converters=converters or None)
    except ValueError:
        return None
    if a.shape[1] != width:
        return None  # every row has one number of fields, but not the header's
    x = a[:, columns.features].astype(np.float32)
    y = a[:, columns.target]
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None  # missing values: the exact reader names them or applies the policy
    return x, y


def _ignore(cell: str) -> float:
    return 0.0


def _label_id(cell: str, labels: dict[str, int]) -> float:
    cell = cell.strip()
    if not cell:
        raise ValueError("a missing target")
    return float(labels.setdefault(cell, len(labels)))


def _exact_chunk(lines: list[str], first_line: int, columns: Columns, name: str,
                 missing: Missing, labels: dict[str, int] | None,
                 numeric_target: bool) -> tuple[np.ndarray, np.ndarray]:
    """The csv module, cell by cell: the first bad cell is reported with its line."""
    width = len(columns.header)
    names = columns.header
    target = columns.target
    xs: list[list[float]] = []
    ys: list[float] = []
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise DataError.in_file(name, f"not valid CSV: {exc}",
                                    first_line + reader.line_num - 1) from None
        if row is None:
            break
        line = first_line + reader.line_num - 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines, e.g. a trailing newline
        if len(row) != width:
            raise DataError.in_file(name, f"expected {width} fields as in the header, "
                                    f"found {len(row)}", line)
        xs.append([_cell(row[i], names[i], name, line, missing != "error")
                   for i in columns.features])
        ys.append(_target(row[target], names[target], name, line, missing, labels,
                          numeric_target))
    return (np.asarray(xs, dtype=np.float32).reshape(len(xs), len(columns.features)),
            np.asarray(ys, dtype=np.float64))


def _cell(cell: str, column: str, name: str, line: int, allow_missing: bool) -> float:
    """A feature cell: a finite number, or NaN for a missing value when allowed."""
    try:
        return _number(cell, column, name, line)
    except DataError as exc:
        if allow_missing and is_missing(cell):
            return math.nan
        if is_missing(cell):
            exc.hint = MISSING_HINT
            raise
        raise TextFeature(str(exc), problems=exc.problems) from None


def _target(cell: str, column: str, name: str, line: int, missing: Missing,
            labels: dict[str, int] | None, numeric_target: bool) -> float:
    text = cell.strip()
    absent = not text or (labels is None and is_missing(text))
    if absent:
        if missing == "drop":
            return math.nan
        what = "the target is empty" if not text else f"the target {text} is not a finite number"
        raise DataError.in_file(name, f"column '{column}': {what}", line,
                                hint="a missing target cannot be filled in; set data.missing: "
                                "drop to drop such rows")
    if labels is not None:
        return float(labels.setdefault(text, len(labels)))
    try:
        return _number(text, column, name, line)
    except DataError:
        if numeric_target:
            raise DataError.in_file(
                name, f"column '{column}': '{text}' is not a number; streamed data needs "
                "numeric labels (class indices 0, 1, ...)", line,
                hint="map the labels to numbers, or set data.stream: false to load the file "
                "whole (text labels work then)") from None
        raise _TextTarget() from None


def is_missing(cell: str) -> bool:
    """Empty, or a number that is not finite (nan, inf)."""
    text = cell.strip()
    if not text:
        return True
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _number(cell: str, column: str, name: str, line: int) -> float:
    text = cell.strip()
    try:
        # Python's float() takes 1_000; numpy's and TensorFlow's parsers do not: neither here.
        if "_" in text:
            raise ValueError(text)
        value = float(text)
    except ValueError:
        what = "is empty" if not text else f"'{text}' is not a number"
        raise DataError.in_file(name, f"column '{column}': {what}", line) from None
    if not math.isfinite(value):
        raise DataError.in_file(name, f"column '{column}': {text} is not a finite number", line)
    return value


def write_csv(x: np.ndarray, y: np.ndarray, out: TextIO,
              feature_names: list[str] | None = None, target: str = "y", *,
              header: bool = True) -> None:
    """Write features and target with a header (unless not, for the rows that follow it);
    floats keep full float32 precision."""
    names = feature_names or [f"x{i}" for i in range(x.shape[1])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow([*names, target])
    ys = [str(int(v)) for v in y] if y.dtype.kind in "iu" else [repr(float(v)) for v in y]
    for row, label in zip(x.tolist(), ys):
        w.writerow([*(repr(float(v)) for v in row), label])
    out.write(buf.getvalue())
