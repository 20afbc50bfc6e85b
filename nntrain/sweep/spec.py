"""The sweep file: a base config, a search space over its keys, and how to search.

    config: ../configs/moons.yaml          # relative to this file
    trials: 20
    metric: validation.accuracy            # a split of metrics.json and a metric name
    sampler: tpe                           # tpe, random or grid
    pruner: median                         # none or median
    space:
      training.optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
      model.layers[0].units: {int: [4, 64]}
      model.layers[0].activation: {choice: [relu, tanh]}
    set:                                   # fixed for every trial, like --set
      training.epochs: 10

Keys are the dotted paths of ``--set``. Every key must name a value of the base config (its
defaults filled in), or a new argument of a layer, optimizer, loss or metric; every choice and
both ends of every range are checked by the config schema before anything trains, and a mistake
is reported at the sweep file's line and column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nntrain.config import LoadedConfig, Locator, config_error, validate_source
from nntrain.config.loader import Source, load_file
from nntrain.config.overrides import parse_key
from nntrain.errors import ConfigError, KeyPath, Problem, did_you_mean, format_path

# The kinds of search dimension, each a mapping with one of these keys.
KINDS = ("choice", "uniform", "log_uniform", "int")
SPLITS = ("validation", "train")  # never the test rows: they report the winner, once


class Pruner(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    type: Literal["none", "median"] = "median"
    # Trials that always run to the end before the pruner compares against them, and epochs
    # every trial trains before it can be pruned: a median of one or two is mostly noise.
    startup_trials: Annotated[int, Field(ge=0)] = 3
    warmup_epochs: Annotated[int, Field(ge=0)] = 1


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    config: str
    trials: Annotated[int, Field(gt=0)] = 20
    metric: str = "validation.loss"
    direction: Literal["minimize", "maximize"] | None = None  # from the metric's name if omitted
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    # The sampler's: trial N draws with a seed derived from it and N (sweep/run.py), so a
    # one-worker sweep samples the same trials every time, and workers never share draws.
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    pruner: Pruner | Literal["none", "median"] = "none"
    space: Annotated[dict[str, Any], Field(min_length=1)]
    set: dict[str, Any] = {}
    directory: str | None = None  # relative to this file; default: next to it, named like it
    # Optuna's pictures of the study, drawn at the end of every call (1-2 s of matplotlib);
    # false for sweeps nobody looks at.
    plots: bool = True


@dataclass(frozen=True)
class Dimension:
    key: str  # the dotted path as written
    path: KeyPath
    kind: str  # one of KINDS
    values: tuple[Any, ...]  # choice: the choices; ranges: (low, high)

    def to_json(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}


@dataclass
class Sweep:
    """A checked sweep file: the spec, its search space, and the base config it varies."""

    spec: SweepSpec
    source: Source
    base: LoadedConfig
    dimensions: list[Dimension]
    fixed: dict[str, Any]
    name: str
    directory: Path

    @property
    def split_metric(self) -> tuple[str, str]:
        split, _, name = self.spec.metric.partition(".")
        return split, name

    @property
    def epoch_key(self) -> str:
        """The per-epoch log key of the metric (val_accuracy), which the pruner watches."""
        split, name = self.split_metric
        return f"val_{name}" if split == "validation" else name

    @property
    def direction(self) -> str:
        if self.spec.direction is not None:
            return self.spec.direction
        from nntrain.registry import bigger_is_better

        return "maximize" if bigger_is_better(self.split_metric[1]) else "minimize"

    @property
    def pruner(self) -> Pruner | None:
        p = self.spec.pruner
        p = Pruner(type=p) if isinstance(p, str) else p
        return None if p.type == "none" else p

    def space_json(self) -> dict[str, Any]:
        """What a resumed sweep must keep the same: the search, not how long it runs."""
        return {"config": str(self.base_path), "metric": self.spec.metric,
                "direction": self.direction,
                "space": {d.key: d.to_json() for d in self.dimensions}, "set": self.fixed}

    @property
    def base_path(self) -> Path:
        return Path(self.base.source.name).resolve()

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """--set expressions for one trial: the fixed values, then the sampled ones."""
        values = {**self.fixed, **params}
        return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def load_sweep(path: str | Path, directory: str | Path | None = None) -> Sweep:
    """Read and check a sweep file and its base config; raise ConfigError with positions."""
    source = load_file(path)
    spec = _validate(source)
    here = Path(source.name).resolve().parent
    base_file = here / Path(spec.config).expanduser()
    # The base config's own problems are reported in its own file, where they are.
    base = validate_source(load_file(base_file), [])
    problems: list[Problem] = []
    metric_problem = _check_metric(spec.metric, base)
    if metric_problem:
        problems.append(metric_problem)
    dimensions: list[Dimension] = []
    for key, value in spec.space.items():
        dim = _dimension(key, value, problems)
        if dim is not None:
            dimensions.append(dim)
    fixed: dict[str, Any] = {}
    for key, value in spec.set.items():
        where: KeyPath = ("set", key)
        if _check_key(key, where, base, problems) is not None:
            fixed[key] = value
    for dim in dimensions:
        if _check_key(dim.key, ("space", dim.key), base, problems) is None:
            continue
        for i, value in enumerate(dim.values):
            _check_value(base, fixed, dim.key, value, ("space", dim.key, dim.kind, i), problems)
    if not problems:
        for key, value in fixed.items():
            _check_value(base, fixed, key, value, ("set", key), problems)
    if spec.sampler == "grid":
        _check_grid(spec, dimensions, problems)
    if problems:
        raise _located(source, problems)
    name = Path(source.name).stem or "sweep"
    if directory is not None:
        out = Path(directory)  # given on the command line: relative to the working directory
    elif spec.directory is not None:
        out = here / Path(spec.directory).expanduser()
    else:
        out = here / name
    return Sweep(spec, source, base, dimensions, fixed, name, out.resolve())


def grid_points(dimensions: list[Dimension]) -> dict[str, list[Any]]:
    """The grid sampler's values of each dimension: the choices, or every integer of a range."""
    return {d.key: list(d.values) if d.kind == "choice" else
            list(range(d.values[0], d.values[1] + 1)) for d in dimensions}


# --- checks --------------------------------------------------------------------------------

_FIELDS = list(SweepSpec.model_fields)


def _validate(source: Source) -> SweepSpec:
    data = source.data
    if not isinstance(data, dict):
        raise _located(source, [Problem("a sweep file is a mapping with at least 'config' and "
                                        "'space'")])
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _located(source, [_problem(err) for err in exc.errors()]) from None


def _problem(err: dict[str, Any]) -> Problem:
    loc = tuple(p for p in err["loc"] if not str(p).startswith(("literal[", "function-")))
    if loc and loc[0] == "pruner" and len(loc) > 1 and loc[1] == "Pruner":
        loc = ("pruner",) + loc[2:]
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        fields = list(Pruner.model_fields) if loc[0] == "pruner" else _FIELDS
        hint = did_you_mean(str(loc[-1]), fields) or f"; valid keys here: {', '.join(fields)}"
        return Problem(f"unknown key '{loc[-1]}'{hint}", loc, key=True)
    if kind == "missing":
        return Problem(f"required key '{loc[-1]}' is missing", loc[:-1], key=True)
    if kind == "literal_error":
        return Problem(f"expected {err['ctx']['expected']}, got {value!r}", loc)
    if kind in ("greater_than", "greater_than_equal"):
        return Problem(f"expected a positive integer, got {value!r}"
                       if kind == "greater_than" else
                       f"expected an integer >= {err['ctx']['ge']}, got {value!r}", loc)
    if kind == "too_short":
        return Problem("expected at least one key path to search over", loc)
    if kind in ("int_type", "string_type", "dict_type", "model_type"):
        what = {"int_type": "an integer", "string_type": "text",
                "dict_type": "a mapping (key: value)", "model_type": "a mapping"}[kind]
        return Problem(f"expected {what}, got {value!r}", loc)
    return Problem(err["msg"], loc)


def _check_metric(metric: str, base: LoadedConfig) -> Problem | None:
    split, dot, name = metric.partition(".")
    names = ["loss", *(m.args.get("name", m.name) for m in base.config.training.metrics)]
    if not dot or split not in (*SPLITS, "test"):
        return Problem(f"expected SPLIT.METRIC such as validation.{names[-1]}, got "
                       f"'{metric}'", ("metric",))
    if split == "test":
        return Problem("the test rows never select: they report the winner, once, at the end; "
                       f"use validation.{name}", ("metric",))
    if name not in names:
        return Problem(f"the base config logs no metric '{name}'{did_you_mean(name, names)}; "
                       f"choose one of: {', '.join(f'{split}.{n}' for n in names)}",
                       ("metric",))
    if split == "validation" and not _has_validation(base):
        return Problem("the base config has no validation rows (data.split.validation is 0); "
                       "give it some, e.g. set: {data.split.validation: 0.2}", ("metric",))
    return None


def _has_validation(base: LoadedConfig) -> bool:
    data = base.config.data
    return bool(getattr(data, "validation_path", None) or getattr(data, "validation", None)
                or data.split.validation > 0)


def _dimension(key: str, value: Any, problems: list[Problem]) -> Dimension | None:
    where: KeyPath = ("space", key)
    try:
        path = parse_key(key, key)
    except ConfigError as exc:
        problems.append(Problem(exc.problems[0].message, where, key=True))
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in KINDS:
        got = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
        hint = did_you_mean(str(got), KINDS) if got is not None else ""
        problems.append(Problem(
            f"expected one of {{choice: [...]}}, {{uniform: [low, high]}}, {{log_uniform: "
            f"[low, high]}} or {{int: [low, high]}}{hint}", where + ((got,) if got else ())))
        return None
    kind, values = next(iter(value.items()))
    where += (kind,)
    if not isinstance(values, list) or not values:
        problems.append(Problem("expected a non-empty list", where))
        return None
    if kind == "choice":
        if any(isinstance(v, (dict, list)) for v in values):
            problems.append(Problem("choices are plain values (numbers, names, true/false)",
                                    where))
            return None
        if len({json.dumps(v) for v in values}) != len(values):
            problems.append(Problem("each choice must appear once", where))
            return None
        return Dimension(key, path, kind, tuple(values))
    if len(values) != 2:
        problems.append(Problem(f"expected [low, high], got {len(values)} value(s)", where))
        return None
    number = int if kind == "int" else (int, float)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v):
            what = "an integer" if kind == "int" else "a number"
            problems.append(Problem(f"expected {what}, got {v!r}", where + (i,)))
            return None
    low, high = values
    if low >= high:
        problems.append(Problem(f"expected low < high, got [{low}, {high}]", where))
        return None
    if kind == "log_uniform" and low <= 0:
        problems.append(Problem(f"a log scale needs low > 0, got {low}", where + (0,)))
        return None
    return Dimension(key, path, kind, (low, high) if kind == "int" else
                     (float(low), float(high)))


def _check_key(key: str, where: KeyPath, base: LoadedConfig,
               problems: list[Problem]) -> KeyPath | None:
    """The key must name a value of the base config (defaults included), or a new argument of
    a layer, optimizer, loss or metric that is not a misspelling of one it has."""
    try:
        path = parse_key(key, key)
    except ConfigError as exc:
        problems.append(Problem(exc.problems[0].message, where, key=True))
        return None
    if path[0] == "output" and path != ("output", "plots"):
        problems.append(Problem("the sweep decides where each trial's run goes (one directory "
                                "per trial in the sweep directory); only output.plots may be "
                                "set", where, key=True))
        return None
    from nntrain.runs.record import resolved_config

    node: Any = resolved_config(base)
    for i, part in enumerate(path):
        here = format_path(path[:i]) or "the config"
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                problems.append(Problem(f"{here} has {size} item(s); there is no "
                                        f"[{part}]", where, key=True))
                return None
            node = node[part]
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        siblings = [str(k) for k in node] if isinstance(node, dict) else []
        suggestion = did_you_mean(part, siblings)
        open_mapping = _open_mapping(path[:i])
        if open_mapping and i == len(path) - 1 and not suggestion:
            return path  # a new argument; Keras checks it when the trial builds the model
        message = f"{here} has no '{part}'{suggestion}"
        if not suggestion and siblings:
            message += f"; it has: {', '.join(siblings)}"
        problems.append(Problem(message, where, key=True))
        return None
    return path


def _open_mapping(path: KeyPath) -> bool:
    """Mappings whose keys are a Keras constructor's arguments, not the schema's."""
    return (len(path) == 3 and path[:2] == ("model", "layers")) or \
        path in (("training", "optimizer"), ("training", "loss")) or \
        (len(path) == 3 and path[:2] == ("training", "metrics"))


def _check_value(base: LoadedConfig, fixed: dict[str, Any], key: str, value: Any,
                 where: KeyPath, problems: list[Problem]) -> None:
    """Validate the base config with this one value set; report the schema's complaint here."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in {**fixed, key: value}.items()]
    try:
        validate_source(base.source, overrides)
    except ConfigError as exc:
        p = exc.problems[0]
        inner = format_path(p.path)
        problems.append(Problem(p.message if inner in ("", key) else f"{inner}: {p.message}",
                                where))


def _check_grid(spec: SweepSpec, dimensions: list[Dimension], problems: list[Problem]) -> None:
    size = 1
    for d in dimensions:
        if d.kind in ("uniform", "log_uniform"):
            problems.append(Problem(f"the grid sampler needs countable values: use choice or "
                                    f"int, not {d.kind}", ("space", d.key, d.kind)))
            return
        size *= len(d.values) if d.kind == "choice" else d.values[1] - d.values[0] + 1
    if spec.trials > size:
        problems.append(Problem(f"the grid has {size} point(s); trials must be at most that, "
                                f"got {spec.trials}", ("trials",)))


def _located(source: Source, problems: list[Problem]) -> ConfigError:
    return config_error(Locator(source), problems)
