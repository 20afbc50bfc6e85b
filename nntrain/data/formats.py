"""File formats for generated data: CSV (a header, then rows) and NPZ (named arrays).

Parquet is not offered: it would need pyarrow (about 170 MB installed, next to TensorFlow) for
data that CSV and NPZ already carry without loss; pandas users convert in one line
(``pd.read_csv("data.csv").to_parquet("data.parquet")``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nntrain.data.arrays import write_npz
from nntrain.data.csvfile import write_csv
from nntrain.errors import UsageError

FORMATS = ("csv", "npz")
_BY_SUFFIX = {".csv": "csv", ".txt": "csv", ".npz": "npz"}


def choose_format(output: str, fmt: str | None) -> str:
    """The format asked for (one of FORMATS: the CLI's choice option checked it), else the one
    the output file's extension names, else CSV."""
    if fmt is not None:
        return fmt
    suffix = Path(output).suffix.lower() if output != "-" else ""
    if not suffix:
        return "csv"
    if suffix not in _BY_SUFFIX:
        raise UsageError(f"{output}: cannot tell the format from '{suffix}'; name it with "
                         "--format csv or --format npz"
                         + (_NO_PARQUET if suffix in (".parquet", ".pq") else ""))
    return _BY_SUFFIX[suffix]


_NO_PARQUET = (" (Parquet is not supported: convert the CSV with pandas, "
               "pd.read_csv(f).to_parquet(g))")


# Rows per piece of CSV: a pipeline's reader starts at once rather than after every row of a
# large dataset is formatted (a million rows take seconds), and memory stays flat.
CHUNK_ROWS = 10_000


def encode(x: np.ndarray, y: np.ndarray, fmt: str) -> bytes:
    """The file's bytes: the same arrays always give the same bytes."""
    return b"".join(encode_chunks(x, y, fmt))


def encode_chunks(x: np.ndarray, y: np.ndarray, fmt: str,
                  rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """encode()'s bytes in pieces: CSV a header and CHUNK_ROWS rows at a time; NPZ whole."""
    names = [f"x{i}" for i in range(x.shape[1])]
    if fmt == "npz":
        out = io.BytesIO()
        write_npz(out, {"x": x, "y": y, "feature_names": np.asarray(names)})
        yield out.getvalue()
        return
    for start in range(0, max(len(x), 1), rows):
        text = io.StringIO()
        write_csv(x[start:start + rows], y[start:start + rows], text, names,
                  header=start == 0)
        yield text.getvalue().encode("utf-8")
