"""The command line. The only layer that prints or chooses an exit code.

Standard output carries data only (the run directory, JSON results, generated data); progress,
tables and errors go to standard error. TensorFlow is imported inside the commands that need it,
so ``nntrain --help`` and ``nntrain schema`` stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from nntrain import __version__
from nntrain.errors import EXIT_FAILURE, NntrainError, UsageError

app = typer.Typer(
    name="nntrain",
    help="Train Keras neural networks from YAML config files.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_CODES_HELP = ("Exit codes: 0 success, 1 runtime failure, 2 bad usage, config or data, "
                   "3 training diverged, 130 interrupted.")


def _stderr() -> Console:
    # Created per call so that tests capturing sys.stderr see the output.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


class _State:
    quiet = False


def _version(value: bool) -> None:
    if value:
        print(f"nntrain {__version__}")
        raise typer.Exit()


@app.callback(epilog=EXIT_CODES_HELP)
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Train Keras neural networks from YAML config files."""


ConfigArg = Annotated[Path, typer.Argument(help="The run's YAML config file.", metavar="CONFIG",
                                           show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a config value, e.g. --set training.epochs=50 --set "
         "model.layers[0].units=64. Values are typed as YAML types them. Repeatable.")]


# --- train -------------------------------------------------------------------------------

@app.command(epilog=EXIT_CODES_HELP)
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of the same "
                                        "output.name.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as one JSON "
                                           "document on stdout instead of the run path.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors on "
                                        "stderr.")] = False,
) -> None:
    """Train the model a config describes and write a run directory.

    Prints the run directory on stdout (so `nntrain eval $(nntrain train c.yaml)` works), or
    the results as JSON with --json. Progress and the final metrics go to stderr.
    """
    from nntrain.config import load_config
    from nntrain.train import train as run_training

    err = _stderr()
    loaded = load_config(config, set_ or [])

    def on_prepared(prepared: Any) -> None:
        if not quiet:
            ds = prepared.dataset
            err.print(f"data: {ds.source}, {len(ds.x_train)} train / {len(ds.x_val)} validation "
                      f"/ {len(ds.x_test)} test rows, {ds.n_features} features; model: "
                      f"{prepared.model.count_params():,} parameters")

    def on_epoch(epoch: int, total: int, logs: dict[str, float], seconds: float) -> None:
        if not quiet:
            width = len(str(total))
            values = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
            err.print(f"epoch {epoch:>{width}}/{total}  {values}  ({seconds:.2f}s)")

    run, result, prepared = run_training(loaded, argv=["nntrain", *sys.argv[1:]], force=force,
                                         on_epoch=on_epoch, on_prepared=on_prepared)
    if not quiet:
        for note in prepared.notes:
            err.print(f"note: {note}")
        err.print(_metrics_table(result.metrics))
        err.print(f"run directory: {run.path}")
    if json_out:
        print(json.dumps({"run_dir": str(run.path), "epochs": result.epochs_run,
                          "seconds": round(result.seconds, 3), "metrics": result.metrics}))
    else:
        print(run.path)


def _metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    splits = list(metrics)
    names: list[str] = []
    for s in splits:
        names += [k for k in metrics[s] if k not in names]
    table = Table(title="final metrics", title_justify="left")
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    for n in names:
        table.add_row(n, *(f"{metrics[s][n]:.4f}" if n in metrics[s] else "" for s in splits))
    return table


# --- validate and schema -----------------------------------------------------------------

@app.command(epilog=EXIT_CODES_HELP)
def validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config without training: every error at once, then a dry build of the model.

    Loads the data and builds the model to catch mismatches (labels, output units, input
    shape), prints the model summary on stderr and writes nothing.
    """
    from nntrain.config import load_config
    from nntrain.train import prepare

    loaded = load_config(config, set_ or [])
    prepared = prepare(loaded)
    err = _stderr()
    err.print(_summary_table(prepared.model))
    err.print(f"{config}: OK ({prepared.task}, {len(prepared.dataset.x_train)} training rows)")


def _summary_table(model: Any) -> Table:
    table = Table(title="model", title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape")
    table.add_column("parameters", justify="right")
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None else "?"
        table.add_row(layer.name, type(layer).__name__, str(shape), f"{layer.count_params():,}")
    table.add_section()
    table.add_row("total", "", "", f"{model.count_params():,}")
    return table


@app.command(epilog=EXIT_CODES_HELP)
def schema() -> None:
    """Print the JSON Schema of the config file on stdout (for editors and linters)."""
    from nntrain.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))


# --- generate-data -----------------------------------------------------------------------

@app.command("generate-data", epilog=EXIT_CODES_HELP)
def generate_data(
    generator: Annotated[Optional[str], typer.Argument(
        help="Which dataset: random (the tutorial's noise), linear, xor, moons, circles, "
             "spirals, blobs, regression, sine, friedman.", show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Rows.")] = 1000,
    features: Annotated[Optional[int], typer.Option(
        "--features", "-f", min=1, help="Input columns (the generator's default when "
        "omitted).")] = None,
    classes: Annotated[int, typer.Option("--classes", "-c", min=1,
                                         help="Classes (random, blobs, spirals).")] = 2,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Noise level.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the "
                                      "same bytes.")] = 42,
    output: Annotated[str, typer.Option("--output", "-o", help="File to write (.csv), or - "
                                        "for stdout.")] = "-",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the generators and exit.")] = False,
) -> None:
    """Write a synthetic dataset as CSV (header x0,x1,...,y) to a file or stdout."""
    import io

    from nntrain import registry
    from nntrain.data.csvfile import write_csv
    from nntrain.data.synthetic import GENERATORS, generate
    from nntrain.runs import atomic_write_text

    if list_:
        for name, gen in GENERATORS.items():
            print(f"{name:<11} {gen.task:<15} {gen.summary}")
        return
    if generator is None:
        raise UsageError("name a generator, e.g. `nntrain generate-data moons`; "
                         "`--list` shows them all")
    try:
        name = registry.resolve("generator", generator, GENERATORS)
    except registry.UnknownName as exc:
        raise UsageError(str(exc)) from None
    gen = GENERATORS[name]
    if features is not None and features < gen.min_features:
        raise UsageError(f"generator '{name}' needs at least {gen.min_features} features")
    x, y = generate(name, samples, features, classes, noise, seed)
    buf = io.StringIO()
    write_csv(x, y, buf)
    if output == "-":
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
        return
    path = Path(output)
    if path.exists() and not force:
        raise UsageError(f"{path}: exists already; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such directory")
    atomic_write_text(path, buf.getvalue())
    if not _State.quiet:
        _stderr().print(f"wrote {samples} rows to {path}")


# --- entry point -------------------------------------------------------------------------

def _report(exc: NntrainError) -> None:
    from nntrain.config import locate

    err = _stderr()
    for p in exc.problems:
        where = locate(p)
        line = f"{where}: {p.message}" if where else f"nntrain: {p.message}"
        if exc.hint and p is exc.problems[-1]:
            line += f"; {exc.hint}"
        err.print(line, markup=False)


class _Interrupted(BaseException):
    """Raised by our SIGINT/SIGTERM handler; a BaseException so nothing below swallows it."""

    def __init__(self, signum: int):
        self.signum = signum


def _on_signal(signum: int, frame: Any) -> None:
    raise _Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. --debug may appear anywhere on the line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NNTRAIN_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Standalone mode: Typer handles --help and usage errors (exit 2) and ends in SystemExit.
        app(args=args, prog_name="nntrain")
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except NntrainError as exc:
        if debug:
            traceback.print_exc()
        _report(exc)
        return exc.exit_code
    except _Interrupted as exc:
        print("nntrain: interrupted", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a message
        if debug:
            traceback.print_exc()
        else:
            print(f"nntrain: internal error: {type(exc).__name__}: {exc} "
                  "(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
