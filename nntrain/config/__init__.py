"""From a path (and command-line overrides) to a validated, frozen RunConfig, or one
ConfigError listing every problem of the file with its key path, in file order. The error
carries a Locator (the YAML node tree and the overrides); the CLI prints each problem's
``file:line:column`` (or the option that set the key) with it."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from nntrain.config.loader import Source, load_file, parse
from nntrain.config.overrides import Override, apply_overrides, parse_override
from nntrain.config.schema import DATA_PATH_KEYS, RunConfig
from nntrain.errors import ConfigError, KeyPath, Problem, did_you_mean, format_path


@dataclass
class LoadedConfig:
    config: RunConfig
    source: Source
    # The key paths the command line set, and what was typed to set each (--set k=v, --data F).
    overrides: dict[KeyPath, str] = field(default_factory=dict)

    @property
    def locator(self) -> "Locator":
        return Locator(self.source, self.overrides)

    @property
    def base_dir(self) -> Path:
        """Relative data paths in the file are relative to the file itself."""
        return Path(self.source.name).resolve().parent


Overrides = list[str | Override]  # --set expressions, or typed ones (overrides.py)


def load_config(path: str | Path, overrides: Overrides | None = None) -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError with every problem."""
    source = load_file(path)
    return validate_source(source, overrides or [])


def load_text(text: str, name: str = "<config>", overrides: Overrides | None = None
              ) -> LoadedConfig:
    return validate_source(parse(text, name), overrides or [])


# Keys whose values are paths. In the file they are relative to the file; given on the
# command line (--set, --data), to where the command runs, as a shell user expects.
PATH_KEYS = [("data", *key) for key in DATA_PATH_KEYS]


def validate_source(source: Source, overrides: Overrides) -> LoadedConfig:
    typed = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    problems = _misplaced_options(source.data, typed)
    data, applied = apply_overrides(source.data, [o for o in typed if o.sources is None or
                                                  _data_source(source.data) in o.sources])
    base = Path(source.name).resolve().parent  # LoadedConfig.base_dir
    for key in PATH_KEYS if base != Path.cwd() else ():
        if not any(key[:n] in applied for n in range(1, len(key) + 1)):
            continue  # not set on the command line (--set data={...} sets all below it)
        node = data
        for part in key[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(key[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and value != "-" and \
                not Path(value).expanduser().is_absolute():
            node[key[-1]] = str(Path.cwd() / Path(value).expanduser())
    if not isinstance(data, dict):
        raise config_error(Locator(source, applied), [Problem(
            f"the top level must be a mapping of sections (data, model, training), "
            f"got {_describe(data)}")])
    config = None
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems += [_translate(err, data, source, applied) for err in exc.errors()]
    if problems:
        raise config_error(Locator(source, applied), problems)
    assert config is not None
    return LoadedConfig(config, source, applied)


def _data_source(data: Any) -> Any:
    section = data.get("data") if isinstance(data, dict) else None
    return section.get("source") if isinstance(section, dict) else None


def _misplaced_options(data: Any, overrides: list[Override]) -> list[Problem]:
    """--data on a config whose data source takes no data.path (it would not name a target)."""
    problems = []
    for o in overrides:
        kind = _data_source(data)
        if o.sources is not None and kind not in o.sources:
            option = o.origin.split(" ", 1)[0]
            problems.append(Problem(
                f"{option} needs a config whose data.source is {', '.join(o.sources[:-1])} or "
                f"{o.sources[-1]} (it names the target), got {_describe(kind)}",
                ("data", "source"), key=kind is None))
    return problems


@dataclass
class Locator:
    """Where a key path of a config is: its place in the file (the YAML node tree), or the
    command-line words that set it. Attached to a ConfigError; the CLI places its problems."""

    source: Source
    applied: dict[KeyPath, str] = field(default_factory=dict)

    def order(self, problem: Problem) -> tuple[int, int]:
        """Sort key: the file order of the key path (0, 0 when the file lacks it)."""
        pos = self.source.position(problem.path, key=problem.key)
        return (pos.line, pos.column) if pos else (0, 0)

    def place(self, problem: Problem) -> None:
        """Fill in file, line and column: from the YAML, or the override that set the key."""
        if problem.file is not None:
            return
        # The override that set this key or one inside it (an unknown section it made up).
        origin = next((o for k, o in self.applied.items()
                       if problem.path[: len(k)] == k
                       or (problem.path and k[: len(problem.path)] == problem.path)), None)
        if origin is not None:
            problem.file = origin
            return
        problem.file = self.source.name
        pos = self.source.position(problem.path, key=problem.key)
        if pos:
            problem.line, problem.column = pos.line, pos.column


def config_error(locator: Locator, problems: list[Problem]) -> ConfigError:
    """One ConfigError of every problem, in file order, that the CLI can place."""
    problems = sorted(problems, key=locator.order)
    error = ConfigError(problems[0].message, problems=problems)
    error.locator = locator
    return error


# --- pydantic errors -> one-line messages ------------------------------------------------

_YAML_BOOLEANS = {"yes", "no", "on", "off", "y", "n", "true", "false"}


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _yaml_hint(value: Any, text: str) -> str:
    """Why a name became a boolean: YAML reads an unquoted yes, no, on or off as one."""
    if isinstance(value, bool) and text.lower() in _YAML_BOOLEANS - {"true", "false"}:
        return f" (YAML reads an unquoted {text} as a boolean; write '{text}' in quotes)"
    return ""


def _normalize_loc(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Drop pydantic's union tags from an error location, leaving the key path in the file."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            out.append(part)
        elif last and isinstance(part, (str, int)) and not str(part).startswith(
                ("function-", "tagged-union")):
            out.append(part)
    return tuple(out)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(loc: tuple[Any, ...]) -> Any:
    """The schema's type at a (raw pydantic) location, or None where the schema has none."""
    tp: Any = RunConfig
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next((m for m in typing.get_args(tp) if _has_tag(m, part)), None)
            if tp is None:
                return None
        else:
            return None
    return _unwrap(tp)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at a (raw pydantic) location, for 'did you mean' on unknown keys."""
    tp = _type_at(loc)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return sorted({f for m in typing.get_args(tp) if isinstance(m, type)
                       and issubclass(m, BaseModel) for f in m.model_fields})
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _has_tag(model: Any, tag: Any) -> bool:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    for f in model.model_fields.values():
        if typing.get_origin(f.annotation) is Literal and tag in typing.get_args(f.annotation):
            return True
    return False


def _translate(err: dict[str, Any], data: Any, source: Source,
               applied: dict[KeyPath, str]) -> Problem:
    kind = err["type"]
    raw_loc = tuple(err["loc"])
    path = _normalize_loc(raw_loc, data)
    value = err.get("input")
    ctx = err.get("ctx") or {}
    got = _describe(value)
    hint = _yaml_hint(value, source.texts.get(path, ""))
    key = False
    if kind == "extra_forbidden":
        name = path[-1]
        fields = _fields_at(raw_loc[:-1])
        suggestion = did_you_mean(str(name), fields)
        msg = f"unknown key '{name}'{suggestion}"
        if fields and not suggestion:
            msg += f"; valid keys here: {', '.join(fields)}"
        key = True
    elif kind == "missing":
        msg = f"required key '{path[-1]}' is missing"
        key = True  # point at the section that lacks it
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        msg = f"expected an integer, got {got}{hint}"
    elif kind in ("float_type", "float_parsing"):
        msg = f"expected a number, got {got}{hint}"
    elif kind in ("string_type", "name_type"):
        msg = f"expected a name (text), got {got}{hint}"
    elif kind == "bool_type":
        msg = f"expected true or false, got {got}"
    elif kind in ("list_type", "too_short"):
        msg = (f"expected a list, got {got}" if kind == "list_type"
               else f"expected at least {ctx.get('min_length', 1)} item(s), got "
               f"{ctx.get('actual_length') or 'none'}")
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        msg = f"expected a mapping (key: value), got {got}{hint}"
    elif kind == "greater_than":
        # From the schema, not the value: decay_rate: -1 is a bad number, not a bad integer.
        what = "integer" if _type_at(raw_loc) is int else "number"
        msg = (f"expected a positive {what}, got {value}" if ctx.get("gt") == 0
               else f"expected a number greater than {ctx.get('gt')}, got {value}")
    elif kind == "greater_than_equal":
        msg = (f"expected a number >= 0 (not negative), got {value}" if ctx.get("ge") == 0
               else f"expected at least {ctx.get('ge')}, got {value}")
    elif kind in ("less_than", "less_than_equal"):
        msg = (f"expected a fraction in [0, 1), got {value}" if ctx.get("lt") == 1
               else f"expected less than {ctx['lt']}, got {value}" if "lt" in ctx
               else f"expected at most {ctx.get('le')}, got {value}")
    elif kind == "positive_integer":  # a layer argument (schema._layer_arg_errors)
        msg = f"expected a positive integer, got {got}"
    elif kind == "fraction":
        msg = f"expected a fraction in [0, 1), got {got}"
    elif kind == "literal_error":
        expected = ctx.get("expected", "")
        msg = f"expected {expected}, got {got}"
    elif kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        tag = ctx.get("tag")
        field_name = ctx.get("discriminator", "").strip("'")
        suggestion = did_you_mean(str(tag), tags)
        msg = (f"unknown {field_name} '{tag}'{suggestion}" if suggestion else
               f"unknown {field_name} '{tag}'; choose one of: {', '.join(tags)}")
        path = path + (field_name,)
    elif kind == "union_tag_not_found":
        field_name = ctx.get("discriminator", "").strip("'")
        msg = f"required key '{field_name}' is missing"
        path = path + (field_name,)
        key = True
    elif kind == "learning_rate":  # raised for the optimizer as a whole; point at the value
        lr = ctx.get("lr")
        msg = f"expected a positive number, got {_describe(lr)}"
        if isinstance(lr, float) and not math.isfinite(lr):
            msg += " (training would diverge at once)"
        path = path + ("learning_rate",)
    else:
        msg = err["msg"].removeprefix("Value error, ")
    return Problem(msg, path, key=key)


def locate(problem: Problem, locator: Locator | None = None) -> str:
    """'file:line:col: key.path' (or as much of it as is known) for printing; a locator (the
    error's) first places a problem known only by its key path."""
    if locator is not None:
        locator.place(problem)
    where = problem.file or ""
    # A --set with a huge value: the message says what is wrong with it. A file's path is
    # never cut: it is what the user needs to find the file.
    if where.startswith("--set") and len(where) > 80:
        where = where[:77] + "..."
    if problem.line is not None:
        where += f":{problem.line}"
        if problem.column is not None:
            where += f":{problem.column}"
    keypath = format_path(problem.path)
    if keypath:
        where = f"{where}: {keypath}" if where else keypath
    return where
