"""Overrides from the command line, applied to the loaded data before validation: every
``--set key.path=value``, and the options that are a key of the config (``--data``,
``--strategy``, ``--workers``, ``--worker-index``, ``--backend``). Each is a typed Override
that remembers the words that made it, which is where its errors are reported."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from nntrain.config.loader import parse
from nntrain.errors import ConfigError, KeyPath, format_path

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)((?:\[\d+\])*)$")


def parse_key(text: str, expr: str) -> KeyPath:
    """'model.layers[0].units' -> ("model", "layers", 0, "units")."""
    path: list[str | int] = []
    for part in text.split("."):
        m = _PART.match(part)
        if not m:
            raise _bad(f"--set {expr}", f"'{text}' is not a key path like training.epochs or "
                       "model.layers[0].units")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(path)


@dataclass(frozen=True)
class Override:
    """Set the value at a key path. ``origin`` is what the user typed (``--set
    training.epochs=5``, ``--strategy mirrored``): error messages are located there."""

    path: KeyPath
    value: Any
    origin: str
    # --data: the data sources that take a data.path; for another the option is an error.
    sources: tuple[str, ...] | None = None


# The data sources whose data.path --data may replace: each names its target in the config.
DATA_OPTION_SOURCES = ("csv", "npz", "images")


def option_overrides(*, data: str | None = None, strategy: str | None = None,
                     workers: str | None = None, worker_index: int | None = None,
                     backend: str | None = None) -> list[Override]:
    """The Overrides of `nntrain train`'s options that set a config key (None: not given)."""
    out = []
    if data is not None:
        out.append(Override(("data", "path"), data, f"--data {data}", DATA_OPTION_SOURCES))
    if strategy is not None:
        out.append(Override(("distribution", "strategy"), strategy, f"--strategy {strategy}"))
    if workers is not None:
        out.append(Override(("distribution", "workers"), workers.split(","),
                            f"--workers {workers}"))
    if worker_index is not None:
        out.append(Override(("distribution", "worker_index"), worker_index,
                            f"--worker-index {worker_index}"))
    if backend is not None:
        out.append(Override(("training", "backend"), backend, f"--backend {backend}"))
    return out


def _bad(origin: str, message: str) -> ConfigError:
    return ConfigError.in_file(origin, message)


def parse_override(expr: str) -> Override:
    """'training.epochs=50' -> Override(("training", "epochs"), 50, ...); values are typed as
    YAML types them."""
    if "=" not in expr:
        raise _bad(f"--set {expr}", "expected KEY=VALUE, e.g. --set training.epochs=50")
    key, _, text = expr.partition("=")
    path = parse_key(key.strip(), expr)
    try:
        value = parse(text, f"--set {expr}").data if text.strip() else None
    except ConfigError as exc:
        raise _bad(f"--set {expr}", exc.problems[0].message) from None
    return Override(path, value, f"--set {expr}")


def apply_overrides(data: Any, overrides: list[Override]) -> tuple[Any, dict[KeyPath, str]]:
    """Return a copy of data with every override applied, and which path each one set (with
    its origin)."""
    data = copy.deepcopy(data) if data is not None else {}
    applied: dict[KeyPath, str] = {}
    for o in overrides:
        path, value = o.path, copy.deepcopy(o.value)
        node = data
        for i, part in enumerate(path[:-1]):
            node = _child(node, part, path[i + 1], path[: i + 1], o.origin)
        _assign(node, path[-1], value, path, o.origin)
        applied[path] = o.origin
    return data, applied


def _child(node: Any, part: str | int, nxt: str | int, where: KeyPath, origin: str) -> Any:
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            size = len(node) if isinstance(node, list) else 0
            raise _bad(origin, f"{format_path(where[:-1])} has {size} item(s); there is no "
                       f"[{part}]")
        return node[part]
    if not isinstance(node, dict):
        raise _bad(origin, f"{format_path(where[:-1]) or 'the config'} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = [] if isinstance(nxt, int) else {}
    elif isinstance(node[part], str) and isinstance(nxt, str):
        # `optimizer: adam` plus --set training.optimizer.learning_rate=0.01
        node[part] = {"name": node[part]}
    return node[part]


def _assign(node: Any, part: str | int, value: Any, path: KeyPath, origin: str) -> None:
    if isinstance(part, int):
        if not isinstance(node, list) or part > len(node):
            size = len(node) if isinstance(node, list) else 0
            raise _bad(origin, f"{format_path(path[:-1])} has {size} item(s); there is no "
                       f"[{part}]")
        if part == len(node):
            node.append(value)
        else:
            node[part] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise _bad(origin, f"{format_path(path[:-1])} is not a mapping")
