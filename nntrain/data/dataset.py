"""Datasets: load or generate the rows, split them, and check they fit the task."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nntrain.config.schema import CsvData, GeneratedData, Split
from nntrain.data import synthetic
from nntrain.data.csvfile import read_csv
from nntrain.errors import DataError


@dataclass
class Dataset:
    """All rows of a run, already split. y holds int64 class indices or float32 values."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    labels: list[str] | None = None  # class names, when the file's labels were text
    fingerprint: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 of the rows as trained on: the same data gives the same fingerprint."""
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def load_dataset(cfg: GeneratedData | CsvData, seed: int, base_dir: Path,
                 stratify_default: bool = False) -> Dataset:
    """Read or draw the rows named by the config and split them."""
    labels = None
    if isinstance(cfg, GeneratedData):
        x, y = synthetic.generate(cfg.generator, cfg.samples, cfg.features, cfg.classes,
                                  cfg.noise, cfg.seed if cfg.seed is not None else seed)
        names = [f"x{i}" for i in range(x.shape[1])]
        source = f"generate:{cfg.generator}"
    else:
        path = cfg.path if cfg.path == "-" else str(_resolve(cfg.path, base_dir))
        table = read_csv(path, cfg.target, cfg.features, name=cfg.path)
        x, y, names, labels = table.x, table.y, table.feature_names, table.labels
        source = cfg.path
    stratify = cfg.split.stratify if cfg.split.stratify is not None else stratify_default
    parts = split_rows(len(x), cfg.split, seed, y if stratify else None)
    train, val, test = (np.asarray(p, dtype=np.int64) for p in parts)
    return Dataset(x[train], y[train], x[val], y[val], x[test], y[test], names, labels,
                   fingerprint(x, y), source)


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


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
