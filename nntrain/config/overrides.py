"""``--set key.path=value`` overrides, applied to the loaded data before validation."""

from __future__ import annotations

import copy
import re
from typing import Any

from nntrain.config.loader import parse
from nntrain.errors import ConfigError, KeyPath, Problem, format_path

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)((?:\[\d+\])*)$")


def parse_key(text: str, expr: str) -> KeyPath:
    """'model.layers[0].units' -> ("model", "layers", 0, "units")."""
    path: list[str | int] = []
    for part in text.split("."):
        m = _PART.match(part)
        if not m:
            raise _bad(expr, f"'{text}' is not a key path like training.epochs or "
                       "model.layers[0].units")
        path.append(m.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(path)


def _bad(expr: str, message: str) -> ConfigError:
    return ConfigError(message, problems=[Problem(message, file=f"--set {expr}")])


def parse_override(expr: str) -> tuple[KeyPath, Any]:
    """'training.epochs=50' -> (("training", "epochs"), 50); values are typed as YAML types them."""
    if "=" not in expr:
        raise _bad(expr, "expected KEY=VALUE, e.g. --set training.epochs=50")
    key, _, text = expr.partition("=")
    path = parse_key(key.strip(), expr)
    try:
        value = parse(text, f"--set {expr}").data if text.strip() else None
    except ConfigError as exc:
        raise _bad(expr, exc.problems[0].message) from None
    return path, value


def apply_overrides(data: Any, exprs: list[str]) -> tuple[Any, dict[KeyPath, str]]:
    """Return a copy of data with every override applied, and which path each one set."""
    data = copy.deepcopy(data) if data is not None else {}
    applied: dict[KeyPath, str] = {}
    for expr in exprs:
        path, value = parse_override(expr)
        node = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            node = _child(node, part, nxt, path[: i + 1], expr)
        _assign(node, path[-1], value, path, expr)
        applied[path] = expr
    return data, applied


def _child(node: Any, part: str | int, nxt: str | int, where: KeyPath, expr: str) -> Any:
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            size = len(node) if isinstance(node, list) else 0
            raise _bad(expr, f"{format_path(where[:-1])} has {size} item(s); there is no "
                       f"[{part}]")
        return node[part]
    if not isinstance(node, dict):
        raise _bad(expr, f"{format_path(where[:-1]) or 'the config'} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = [] if isinstance(nxt, int) else {}
    elif isinstance(node[part], str) and isinstance(nxt, str):
        # `optimizer: adam` plus --set training.optimizer.learning_rate=0.01
        node[part] = {"name": node[part]}
    return node[part]


def _assign(node: Any, part: str | int, value: Any, path: KeyPath, expr: str) -> None:
    if isinstance(part, int):
        if not isinstance(node, list) or part > len(node):
            size = len(node) if isinstance(node, list) else 0
            raise _bad(expr, f"{format_path(path[:-1])} has {size} item(s); there is no "
                       f"[{part}]")
        if part == len(node):
            node.append(value)
        else:
            node[part] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise _bad(expr, f"{format_path(path[:-1])} is not a mapping")
