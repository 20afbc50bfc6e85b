"""NumPy files: read an .npz archive or a pair of .npy files, and write .npz byte for byte
the same for the same arrays.

Pickles are never loaded (``allow_pickle=False``): an array of Python objects is refused with
a message saying so. Arrays need rows first: x is (rows, features) or (rows, ...) for images
and sequences, y is (rows,) or (rows, 1).
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nntrain.data.csvfile import Missing, Table
from nntrain.errors import DataError, did_you_mean
from nntrain.filecheck import not_regular

# A fixed timestamp for every member, so that the same arrays give the same bytes (np.savez
# stamps the current time). 1980-01-01 is the earliest date a zip file can hold.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_npz(out: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed .npz archive, as np.savez does, minus the timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    out.write(buf.getvalue())


def read_npz(path: str | Path, x: str = "x", y: str = "y", features: list[int] | None = None,
             name: str | None = None, *, missing: Missing = "error") -> Table:
    """Read arrays ``x`` and ``y`` of an .npz archive (standard input when path is '-')."""
    name = name or str(path)
    source: str | Path | BinaryIO = path
    if str(path) == "-":
        name = "<stdin>"
        source = io.BytesIO(sys.stdin.buffer.read())
    elif (why := not_regular(path)) is not None:
        raise DataError.in_file(name, why)
    try:
        archive = np.load(source, allow_pickle=False)
    except FileNotFoundError:
        raise DataError.in_file(name, "no such data file") from None
    except IsADirectoryError:
        raise DataError.in_file(name, "is a directory, not an NPZ file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError.in_file(name, f"not an NPZ archive ({_first_line(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError.in_file(name, "is a single .npy array, not an .npz archive; use "
                                "source: npy with x_path and y_path")
    with archive:
        present = list(archive.files)
        for key, role in ((x, "x"), (y, "y")):
            if key not in present:
                raise DataError.in_file(
                    name, f"no array '{key}' (data.{role}){did_you_mean(key, present)}; the "
                    f"archive holds: {', '.join(present) or 'nothing'}")
        xa = _array(archive, x, name)
        ya = _array(archive, y, name)
        names = _feature_names(archive, xa, name) if "feature_names" in present else None
    return _table(xa, ya, names, features, name, x, name, y, missing)


def read_npy(x_path: str | Path, y_path: str | Path, features: list[int] | None = None,
             x_name: str | None = None, y_name: str | None = None, *,
             missing: Missing = "error") -> Table:
    """Read inputs and targets from two .npy files."""
    x_name, y_name = x_name or str(x_path), y_name or str(y_path)
    return _table(_npy(x_path, x_name), _npy(y_path, y_name), None, features, x_name, None,
                  y_name, None, missing)


def _npy(path: str | Path, name: str) -> np.ndarray:
    if (why := not_regular(path)) is not None:
        raise DataError.in_file(name, why)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError.in_file(name, "no such data file") from None
    except IsADirectoryError:
        raise DataError.in_file(name, "is a directory, not an .npy file") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError.in_file(name, _PICKLE) from None
        raise DataError.in_file(name, f"not an .npy file ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise DataError.in_file(name, f"not an .npy file ({_first_line(exc)})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded.close()
        raise DataError.in_file(name, "is an .npz archive, not a single .npy array; use "
                                "source: npz")
    return loaded


_PICKLE = ("holds Python objects (a pickled object array); nntrain never loads pickles, "
           "which can run code: save the array with a numeric dtype (or strings for labels)")


def _array(archive: np.lib.npyio.NpzFile, key: str, name: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError.in_file(name, f"array '{key}' {_PICKLE}") from None
        raise DataError.in_file(name, f"array '{key}' cannot be read: {_first_line(exc)}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError.in_file(name, f"array '{key}' is damaged: {_first_line(exc)}") from None


def _feature_names(archive: np.lib.npyio.NpzFile, x: np.ndarray, name: str) -> list[str] | None:
    names = _array(archive, "feature_names", name)
    if names.dtype.kind != "U" or names.ndim != 1 or x.ndim != 2 or len(names) != x.shape[1]:
        return None  # not names of x's columns: fall back to x0, x1, ...
    return [str(n) for n in names]


def _table(x: np.ndarray, y: np.ndarray, names: list[str] | None, features: list[int] | None,
           x_file: str, x_key: str | None, y_file: str, y_key: str | None,
           missing: Missing) -> Table:
    """Checked arrays -> a Table. ``x_key``/``y_key``: the array names in an .npz archive, or
    None for a file that is the array (.npy)."""
    x_where = f"array '{x_key}'" if x_key else "the array"
    y_where = f"array '{y_key}'" if y_key else "the array"
    if x.dtype.kind not in "biuf" or x.ndim == 0:
        raise DataError.in_file(x_file, f"{x_where} must hold numbers in rows, got dtype "
                                f"{x.dtype} and shape {x.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError.in_file(y_file, f"{y_where} must hold one target per row, shape (rows,),"
                                f" got shape {y.shape}", hint="for one-hot targets, store the "
                                "class indices (y.argmax(axis=1)); the loss decides the encoding")
    if len(x) != len(y):
        if x_key and y_key:
            message = f"array '{x_key}' has {len(x)} rows but '{y_key}' has {len(y)}"
        else:
            message = f"has {len(x)} rows but {y_file} has {len(y)}"
        raise DataError.in_file(x_file, f"{message}; x and y need one row per sample")
    if len(x) == 0:
        raise DataError.in_file(x_file, f"{x_where} has no rows")
    if x.ndim == 1:
        x = x[:, None]
    if features is not None:
        if x.ndim != 2:
            raise DataError.in_file(x_file, f"data.features picks columns of a 2-D x; "
                                    f"{x_where} has shape {x.shape}")
        bad = [f for f in features if f >= x.shape[1]]
        if bad:
            raise DataError.in_file(x_file, f"data.features: column {bad[0]} does not exist; "
                                    f"{x_where} has {x.shape[1]} columns (0 to "
                                    f"{x.shape[1] - 1})")
        x = x[:, features]
        names = [names[f] for f in features] if names else [f"x{f}" for f in features]
    if names is None:
        names = [f"x{i}" for i in range(x.shape[1])] if x.ndim == 2 else ["x"]
    x = x.astype(np.float32)
    flat = x.reshape(len(x), -1)
    bad_x = ~np.isfinite(flat)
    if missing == "error" and bad_x.any():
        row, col = np.argwhere(bad_x)[0]
        raise DataError.in_file(x_file, f"{x_where} row {row}, column {col}: {flat[row, col]} "
                                "is not a finite number", hint="to accept missing values, set "
                                "data.missing to drop, mean or {fill: VALUE}")
    y, labels = _targets(y, y_file, y_where, missing)
    return Table(x, y, names, labels)


def _targets(y: np.ndarray, name: str, where: str,
             missing: Missing) -> tuple[np.ndarray, list[str] | None]:
    """Strings are class names (indices in sorted order); numbers stay numbers."""
    if y.dtype.kind in "US":
        text = np.char.strip(y.astype(str))
        empty = text == ""
        if empty.any() and missing != "drop":
            raise DataError.in_file(name, f"{where} row {int(np.flatnonzero(empty)[0])}: the "
                                    "target is empty", hint="a missing target cannot be filled "
                                    "in; set data.missing: drop to drop such rows")
        labels = sorted(set(text[~empty].tolist()))
        index = np.searchsorted(np.asarray(labels), text).astype(np.float64)
        index[empty] = np.nan
        return (index if missing == "drop" else index.astype(np.int64)), labels
    if y.dtype.kind not in "biuf":
        raise DataError.in_file(name, f"{where} must hold numbers or text labels, got dtype "
                                f"{y.dtype}")
    if y.dtype.kind in "biu":
        return y.astype(np.int64), None
    values = y.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any() and missing != "drop":
        row = int(np.flatnonzero(bad)[0])
        raise DataError.in_file(name, f"{where} row {row}: the target {values[row]} is not a "
                                "finite number", hint="a missing target cannot be filled in; "
                                "set data.missing: drop to drop such rows")
    return values, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
