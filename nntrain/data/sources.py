"""Where a data config's rows come from: the files it names, by split, and their paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel

from nntrain.config.schema import (DATA_PATH_KEYS, CsvData, GeneratedData, ImageData,
                                    NpyData, NpzData)
from nntrain.errors import ConfigError

DataConfig = Union[GeneratedData, CsvData, NpzData, NpyData, ImageData]


def data_files(cfg: DataConfig) -> dict[str, Any]:
    """The files a file source reads, by part: 'main', and 'validation'/'test' when separate.
    Paths as written in the config (npy: an (x_path, y_path) pair)."""
    if isinstance(cfg, NpyData):
        files: dict[str, Any] = {"main": (cfg.x_path, cfg.y_path)}
        for part in ("validation", "test"):
            pair = getattr(cfg, part)
            if pair is not None:
                files[part] = (pair.x_path, pair.y_path)
        return files
    if isinstance(cfg, (CsvData, NpzData)):
        files = {"main": cfg.path}
        for part in ("validation", "test"):
            path = getattr(cfg, f"{part}_path")
            if path is not None:
                files[part] = path
        return files
    return {}


def resolve_paths(cfg: DataConfig, base_dir: Path) -> DataConfig:
    """The config with every data path absolute (relative ones are taken from base_dir)."""

    def absolute(path: str) -> str:
        return path if path == "-" else str((base_dir / Path(path).expanduser()).resolve())

    def resolved(section: Any, keys: list[tuple[str, ...]]) -> Any:
        update: dict[str, Any] = {}
        for name in dict.fromkeys(k[0] for k in keys):
            value = getattr(section, name, None)
            inner = [k[1:] for k in keys if k[0] == name and len(k) > 1]
            if isinstance(value, str) and not inner:
                update[name] = absolute(value)
            elif isinstance(value, BaseModel) and inner:  # npy: validation: {x_path, y_path}
                update[name] = resolved(value, inner)
        return section.model_copy(update=update) if update else section

    return resolved(cfg, list(DATA_PATH_KEYS))


def local_path(path: str, base_dir: Path) -> str:
    """A path from the config, relative to base_dir unless absolute; '-' stays '-'."""
    if path == "-":
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base_dir / p)


def require_files(cfg: DataConfig, base_dir: Path) -> None:
    """A missing data file is reported at the config key that names it, with the full path
    it was looked for at (a relative path is taken from the config file's directory)."""
    if isinstance(cfg, ImageData):
        full = local_path(cfg.path, base_dir)
        if not Path(full).exists():
            raise ConfigError.at(("data", "path"), f"no such folder: {Path(full).resolve()}")
    for part, where in data_files(cfg).items():
        if isinstance(cfg, NpyData):
            pair = cfg if part == "main" else getattr(cfg, part)
            keys: tuple[tuple[Any, ...], ...] = (
                ("data",) + ((part,) if part != "main" else ()) + ("x_path",),
                ("data",) + ((part,) if part != "main" else ()) + ("y_path",))
            paths = (pair.x_path, pair.y_path)
        else:
            keys = (("data", "path" if part == "main" else f"{part}_path"),)
            paths = (where,)
        for key, path in zip(keys, paths):
            full = local_path(path, base_dir)
            if full != "-" and not Path(full).exists():
                raise ConfigError.at(key, f"no such data file: {Path(full).resolve()}")
