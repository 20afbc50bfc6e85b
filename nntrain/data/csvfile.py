"""Read a CSV file with a header row into float32 features and a target column.

Errors name the file and the line (``data.csv:3: column 'age': 'abc' is not a number``).
A UTF-8 byte-order mark, CRLF line endings and quoted numbers just work.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from nntrain.errors import DataError, did_you_mean


@dataclass
class Table:
    x: np.ndarray  # float32 (rows, features)
    y: np.ndarray  # float32 values, or int64 indices into `labels`
    feature_names: list[str]
    labels: list[str] | None  # class names when the target column held text


def read_csv(path: str | Path, target: str, features: list[str] | None = None,
             name: str | None = None) -> Table:
    """Read a CSV file from disk, or from standard input when path is '-'."""
    name = name or str(path)
    if str(path) == "-":
        import sys

        return parse_csv(sys.stdin, target, features, "<stdin>")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return parse_csv(fh, target, features, name)
    except FileNotFoundError:
        raise DataError.in_file(name, "no such data file") from None
    except IsADirectoryError:
        raise DataError.in_file(name, "is a directory, not a CSV file") from None
    except UnicodeDecodeError as exc:
        raise DataError.in_file(name, f"not UTF-8 text (byte {exc.start})") from None


def parse_csv(fh: TextIO, target: str, features: list[str] | None, name: str) -> Table:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        raise DataError.in_file(name, "the file is empty; expected a header row and data rows")
    header = [h.strip().lstrip("\ufeff") for h in header]
    columns = {h: i for i, h in enumerate(header)}
    if target not in columns:
        raise DataError.in_file(
            name, f"no target column '{target}'{did_you_mean(target, header)}; the columns "
            f"are: {', '.join(header)}", 1)
    wanted = features if features is not None else [h for h in header if h != target]
    for f in wanted:
        if f not in columns:
            raise DataError.in_file(
                name, f"no feature column '{f}'{did_you_mean(f, header)}; the columns are: "
                f"{', '.join(header)}", 1)
    if not wanted:
        raise DataError.in_file(name, "no feature columns besides the target", 1)
    idx = [columns[f] for f in wanted]
    t = columns[target]
    rows: list[list[float]] = []
    targets: list[str] = []
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank lines, e.g. a trailing newline
        if len(row) != len(header):
            raise DataError.in_file(name, f"expected {len(header)} fields as in the header, "
                                    f"found {len(row)}", line)
        rows.append([_number(row[i], header[i], name, line) for i in idx])
        targets.append(row[t].strip())
    if not rows:
        raise DataError.in_file(name, "no data rows after the header")
    x = np.asarray(rows, dtype=np.float32)
    y, labels = _targets(targets, target, name)
    return Table(x, y, wanted, labels)


def _number(cell: str, column: str, name: str, line: int) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        what = "is empty" if not text else f"'{text}' is not a number"
        raise DataError.in_file(name, f"column '{column}': {what}", line) from None
    if not math.isfinite(value):
        raise DataError.in_file(name, f"column '{column}': {text} is not a finite number", line)
    return value


def _targets(cells: list[str], column: str, name: str) -> tuple[np.ndarray, list[str] | None]:
    """Numbers stay numbers; a column with any text becomes class indices plus their names."""
    try:
        values = np.asarray([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        labels = sorted(set(cells))
        if "" in labels:
            line = cells.index("") + 2
            raise DataError.in_file(name, f"column '{column}': the target is empty", line)
        index = {label: i for i, label in enumerate(labels)}
        return np.asarray([index[c] for c in cells], dtype=np.int64), labels
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError.in_file(name, f"column '{column}': {cells[bad[0]]} is not a finite "
                                "number", int(bad[0]) + 2)
    return values, None


def write_csv(x: np.ndarray, y: np.ndarray, out: TextIO,
              feature_names: list[str] | None = None, target: str = "y") -> None:
    """Write features and target with a header; floats keep full float32 precision."""
    names = feature_names or [f"x{i}" for i in range(x.shape[1])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*names, target])
    ys = [str(int(v)) for v in y] if y.dtype.kind in "iu" else [repr(float(v)) for v in y]
    for row, label in zip(x.tolist(), ys):
        w.writerow([*(repr(float(v)) for v in row), label])
    out.write(buf.getvalue())
