"""The one error family that everything below the CLI raises.

Each error carries a key path (``("model", "layers", 2, "units")``) or a file position, never a
formatted location. Two ways to make one: ``ConfigError.at(key_path, message)`` for a place in
the config, ``SomeError.in_file(file, message, line=...)`` for a place in a file (a data file,
a run directory, a --set expression). Config validation attaches the YAML node tree to the
error as its ``locator``, and the CLI maps key paths back to ``file:line:column`` with it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

KeyPath = tuple[str | int, ...]

# Exit codes, the same for every command (README, "Exit codes").
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3
# Interrupted: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM).


def format_path(path: Sequence[str | int]) -> str:
    """("model", "layers", 2, "units") -> "model.layers[2].units"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class Problem:
    """One thing wrong with the input: where (key path and/or file position) and what."""

    message: str
    path: KeyPath = ()
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    key: bool = False  # point at the key itself rather than its value (unknown keys)


class NntrainError(Exception):
    """Base class: a failure the user can act on. The CLI prints it in one line."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str = "", *, problems: Sequence[Problem] | None = None,
                 hint: str | None = None):
        self.problems: list[Problem] = list(problems) if problems else [Problem(message)]
        self.hint = hint
        # Places the problems' key paths in the config file (config.Locator); the CLI uses it.
        self.locator: Any = None
        super().__init__(message or self.problems[0].message)

    @classmethod
    def in_file(cls, file: object, message: str, line: int | None = None, *,
                column: int | None = None, path: KeyPath = (),
                hint: str | None = None) -> Self:
        """An error about a file or directory (or a line of it), printed location first:
        ``FILE:LINE:COLUMN: message``."""
        return cls(message, problems=[Problem(message, tuple(path), file=str(file), line=line,
                                              column=column)], hint=hint)


class ConfigError(NntrainError):
    """The config (file, --set override or its meaning) is wrong."""

    exit_code = EXIT_USAGE

    @classmethod
    def at(cls, path: Sequence[str | int], message: str, *, key: bool = False,
           hint: str | None = None) -> "ConfigError":
        return cls(message, problems=[Problem(message, tuple(path), key=key)], hint=hint)


class DataError(NntrainError):
    """Input data is missing, malformed or does not fit the config."""

    exit_code = EXIT_USAGE


class UsageError(NntrainError):
    """A command was called in a way that cannot work (missing run directory, bad option)."""

    exit_code = EXIT_USAGE


class RunExistsError(UsageError):
    """The run directory exists already and --force was not given."""


class TrainingDiverged(NntrainError):
    """The loss became NaN or infinite."""

    exit_code = EXIT_DIVERGED


class ExportMismatch(NntrainError):
    """The exported model computes something else than the Keras model."""


class Interrupted(NntrainError):
    """Stopped by SIGINT (exit 130) or SIGTERM (exit 143)."""

    def __init__(self, signum: int, message: str = "interrupted"):
        super().__init__(message)
        self.exit_code = 128 + signum
