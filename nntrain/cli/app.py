"""The commands: each parses its options, calls one function, renders the result (render.py)
and leaves the exit code to main(). The only layer that prints or chooses an exit code.

Standard output carries data only (the run directory, JSON results, generated data); progress,
tables and errors go to standard error. TensorFlow is imported inside the commands that need it,
so ``nntrain --help`` and ``nntrain schema`` stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from nntrain import __version__
from nntrain.cli.plumbing import (EXIT_PIPE, signals, stdout_gone, until_the_reader_leaves,
                                  write_new_file)
from nntrain.cli.render import (folds_tables, importance_table, metrics_table, print_classes,
                                print_leaderboard, runs_table, short_value, stderr,
                                summary_table, value_table)
from nntrain.errors import EXIT_FAILURE, Interrupted, NntrainError, UsageError, did_you_mean

app = typer.Typer(
    name="nntrain",
    help="Train Keras neural networks from YAML config files.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_CODES_HELP = ("Exit codes: 0 success, 1 runtime failure, 2 bad usage, config or data, "
                   "3 training diverged, 130 interrupted.")


@contextlib.contextmanager
def _positions(loaded: Any) -> Iterator[None]:
    """Errors found after validation (data checks, model build) carry only key paths; attach
    the config's locator, so _report prints the file, line and column they came from."""
    from nntrain.errors import ConfigError

    try:
        yield
    except ConfigError as exc:
        if exc.locator is None:
            exc.locator = loaded.locator
            exc.problems.sort(key=exc.locator.order)
        raise


class _State:
    argv: list[str] = []  # the command line as main() received it, for the manifest


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
DataOpt = Annotated[Optional[str], typer.Option(
    "--data", "-d", metavar="FILE",
    help="Read the data from this file, or - for standard input, instead of the config's "
         "data.path (the config's data.source must be csv or npz, and says which this is, or "
         "images: a folder). "
         "Relative to the working directory.")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a config value, e.g. --set training.epochs=50 --set "
         "model.layers[0].units=64. Values are typed as YAML types them. Repeatable.")]


# --- train -------------------------------------------------------------------------------

@app.command(epilog=EXIT_CODES_HELP)
def train(
    config: Annotated[Optional[Path], typer.Argument(
        help="The run's YAML config file (with --resume: optional, the run's own config is "
             "used).", metavar="CONFIG", show_default=False)] = None,
    set_: SetOpt = None,
    data: DataOpt = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="RUN_DIR", help="Continue an interrupted run in its directory, from "
        "its last checkpoint. Only training.epochs may change (e.g. --set training.epochs=50).",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of the same "
                                        "output.name.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as one JSON "
                                           "document on stdout instead of the run path.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Stream one JSON line per epoch on "
                                        "stdout as training runs, then the --json document as "
                                        "the last line (\"event\": \"epoch\", then "
                                        "\"end\").")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors on "
                                        "stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print more: the config and "
                                          "data details, learning rate and rows/s per "
                                          "epoch.")] = False,
    strategy: Annotated[Optional[str], typer.Option(
        "--strategy", metavar="none|mirrored|multi_worker",
        help="Same as --set distribution.strategy=NAME.", show_default=False)] = None,
    workers: Annotated[Optional[str], typer.Option(
        "--workers", metavar="HOST:PORT,...", help="Every worker of a multi-worker run, the "
        "same list on each: --set distribution.workers=[...].", show_default=False)] = None,
    worker_index: Annotated[Optional[int], typer.Option(
        "--worker-index", metavar="N", help="This worker's place in --workers (0 is the "
        "chief, which writes the run): --set distribution.worker_index=N.",
        show_default=False)] = None,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", metavar="tensorflow|jax", help="The Keras backend: --set "
        "training.backend=NAME. Default: KERAS_BACKEND, else jax.",
        show_default=False)] = None,
) -> None:
    """Train the model a config describes and write a run directory.

    Prints the run directory on stdout (so `nntrain eval $(nntrain train c.yaml)` works), or
    the results as JSON with --json, or a JSON line per epoch with --jsonl. Progress and the
    final metrics go to stderr: a live display on a terminal, one line per epoch elsewhere.
    """
    from nntrain.cli import progress
    from nntrain.training.early_stopping import describe
    from nntrain.training.loop import StopRequest
    from nntrain.runs.rundir import CONFIG, RunDir
    from nntrain.training.train import train as run_training

    if quiet and verbose:
        raise UsageError("--quiet and --verbose contradict each other; choose one")
    if json_out and jsonl:
        raise UsageError("--json and --jsonl both print the results on stdout; choose one "
                         "(--jsonl's last line is the --json document)")
    err = progress.make_console()
    display = progress.TrainingDisplay(err, progress.QUIET if quiet else
                                       progress.VERBOSE if verbose else progress.NORMAL)
    if config is None and resume is None:
        raise UsageError("name a config file to train, e.g. `nntrain train "
                         "configs/quickstart.yaml`, or --resume RUN_DIR")
    if config is None:
        config = RunDir.open(resume).file(CONFIG)
    loaded = _load(config, set_, data, strategy=strategy, workers=workers,
                   worker_index=worker_index, backend=backend)
    stop = StopRequest()
    chief = True  # the other workers of a multi-worker run print nothing on stdout
    reader_left = False  # the reader of --jsonl's lines closed the pipe

    def on_signal(signum: int, frame: Any) -> None:
        if stop:  # the second Ctrl-C stops at once
            raise Interrupted(signum)
        stop.request(signum)
        if not quiet:
            err.print("stopping after the current step and saving a checkpoint "
                      "(Ctrl-C again to stop at once)")

    def on_prepared(prepared: Any) -> None:
        nonlocal chief
        chief = prepared.chief
        display.begin(prepared, summary_table(prepared.model))

    def on_epoch(epoch: int, total: int, logs: dict[str, float], seconds: float) -> None:
        display.epoch(epoch, total, logs, seconds)
        nonlocal reader_left
        if jsonl and chief and not reader_left:
            try:
                print(json.dumps(progress.epoch_event(epoch, total, logs, seconds)), flush=True)
            except BrokenPipeError:  # `--jsonl | head -3`: stop as SIGPIPE would, resumably
                reader_left = True
                stdout_gone()
                stop.request(EXIT_PIPE - 128)

    with _positions(loaded), signals(on_signal), display:
        run, result, prepared = run_training(loaded, argv=["nntrain", *_State.argv],
                                             force=force, resume=resume, stop=stop,
                                             on_epoch=on_epoch, on_batch=display.on_batch,
                                             on_prepared=on_prepared)
    display.end([*(f"note: {note}" for note in prepared.notes),
                 *([describe(result.early_stopping)] if result.early_stopping else []),
                 *(folds_tables(result) if result.folds else [metrics_table(result.metrics)]),
                 *([f"resolved config: {run.path / CONFIG}",
                    f"trained {result.epochs_run} epochs in {result.seconds:.2f}s"]
                   if verbose else []),
                 f"run directory: {run.path}" if chief else
                 "done; the chief (worker 0) writes the run directory"])
    document = {"run_dir": str(run.path), "epochs": result.epochs_run,
                "seconds": round(result.seconds, 3), "metrics": result.metrics,
                **({"early_stopping": result.early_stopping} if result.early_stopping else {}),
                **({"std": result.std, "folds": result.folds, "model_fold": result.model_fold}
                   if result.folds else {})}
    if not chief:
        return
    try:
        if jsonl:
            print(json.dumps(progress.end_event(document)), flush=True)
        elif json_out:
            print(json.dumps(document), flush=True)
        else:
            print(run.path, flush=True)
    except BrokenPipeError:  # the run is finished and in place; only its reader left
        stdout_gone()
        raise typer.Exit(EXIT_PIPE) from None


def _load(config: Path, sets: list[str] | None, data: str | None, **options: Any) -> Any:
    """Load and validate the config with --set and the options that set a config key."""
    from nntrain.config import load_config
    from nntrain.config.overrides import option_overrides

    return load_config(config, [*(sets or []), *option_overrides(data=data, **options)])


# --- validate and schema -----------------------------------------------------------------

@app.command(epilog=EXIT_CODES_HELP)
def validate(config: ConfigArg, set_: SetOpt = None, data: DataOpt = None) -> None:
    """Check a config without training: every error at once, then a dry build of the model.

    Loads the data and builds the model to catch mismatches (labels, output units, input
    shape), prints the model summary on stderr and writes nothing. A multi-worker config is
    checked without contacting the other workers.
    """
    from nntrain.training.train import prepare

    loaded = _load(config, set_, data)
    with _positions(loaded):
        prepared = prepare(loaded, contact_workers=False)
    err = stderr()
    err.print(summary_table(prepared.model))
    if prepared.config.distribution.strategy == "multi_worker":
        err.print("multi_worker: the other workers were not contacted (train checks that they "
                  "answer and have the same config)")
    err.print(f"{config}: OK ({prepared.targets.task}, {len(prepared.dataset.x_train)} "
              "training rows)")


@app.command(epilog=EXIT_CODES_HELP)
def schema() -> None:
    """Print the JSON Schema of the config file on stdout (for editors and linters)."""
    from nntrain.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))


# --- init --------------------------------------------------------------------------------

class DataFormat(str, Enum):  # generate-data --format
    csv = "csv"
    npz = "npz"


class StarterTask(str, Enum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


# The choices of the commands that use a trained model; Click refuses any other value (the
# message is _usage_message's "--format: expected one of csv, jsonl, got 'x'").
class RowFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class ExplainMethod(str, Enum):
    gradients = "gradients"
    permutation = "permutation"


class BaselineKind(str, Enum):
    mean = "mean"
    min = "min"
    zeros = "zeros"


class ExportFormat(str, Enum):
    savedmodel = "savedmodel"
    tflite = "tflite"
    onnx = "onnx"


class Quantization(str, Enum):
    float16 = "float16"
    int8 = "int8"


@app.command(epilog=EXIT_CODES_HELP)
def init(
    task: Annotated[StarterTask, typer.Option(
        "--task", "-t", help="What the model predicts: binary (two classes), multiclass "
        "(three or more) or regression (a number).")] = StarterTask.binary,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE",
                                        help="File to write, or - for stdout.")] = "nntrain.yaml",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config for a task; it trains as is on generated data."""
    from nntrain.config.starters import starter_config

    if output == "-":
        sys.stdout.write(starter_config(task.value, "FILE"))
        sys.stdout.flush()
        return
    path = Path(output)
    write_new_file(path, starter_config(task.value, str(path)).encode(), force)
    stderr().print(f"wrote a {task.value} starter config to {path}; train it with: "
                    f"nntrain train {path}", markup=False)


# --- generate-data -----------------------------------------------------------------------

@app.command("generate-data", epilog=EXIT_CODES_HELP)
def generate_data(
    generator: Annotated[Optional[str], typer.Argument(
        help="Which dataset: random (the tutorial's noise), linear, xor, moons, circles, "
             "spirals, blobs, regression, sine, friedman; or shapes, a folder of pictures "
             "(-o FOLDER). --list describes them.", metavar="GENERATOR",
        show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, help="Rows.")] = 1000,
    features: Annotated[Optional[int], typer.Option(
        "--features", "-f", min=1, help="Input columns (the generator's default when "
        "omitted).")] = None,
    classes: Annotated[int, typer.Option("--classes", "-c", min=1,
                                         help="Classes (random, blobs, spirals).")] = 2,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Noise level.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the "
                                      "same bytes.")] = 42,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="File to "
                                        "write (.csv or .npz), or - for stdout; shapes: a "
                                        "folder.")] = "-",
    format_: Annotated[Optional[DataFormat], typer.Option(
        "--format", metavar="csv|npz", case_sensitive=False,
        help="csv (header x0,x1,...,y) or npz (arrays x, y and feature_names). Default: from "
        "the output file's extension, else csv. (No Parquet: pandas converts the CSV, "
        "pd.read_csv(f).to_parquet(g).)", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the generators and exit.")] = False,
    image_size: Annotated[int, typer.Option(
        "--image-size", metavar="PIXELS", help="shapes: the pictures' width and height.")] = 32,
) -> None:
    """Write a synthetic dataset as CSV or NPZ to a file or stdout; `shapes` writes a folder of
    pictures (circle/, square/, triangle/) to -o FOLDER."""
    from nntrain import registry
    from nntrain.data.formats import choose_format, encode, encode_chunks
    from nntrain.data.synthetic import GENERATORS, generate, n_features
    from nntrain.sizes import generated_bytes, too_big

    if list_:
        for name, gen in GENERATORS.items():
            print(f"{name:<11} {gen.task:<15} {gen.summary}")
        print(f"{'shapes':<11} {'pictures':<15} circles, squares and triangles as PNG files "
              "in class folders (-o FOLDER)")
        return
    if generator is None:
        raise UsageError("name a generator, e.g. `nntrain generate-data moons`; "
                         "`--list` shows them all")
    if generator == "shapes":
        from nntrain.data.shapes import write_shapes

        if output == "-":
            raise UsageError("shapes writes a folder of pictures; name it with -o FOLDER")
        folder = write_shapes(Path(output), samples, image_size, noise, seed, force)
        stderr().print(f"wrote {samples} pictures ({image_size}x{image_size}) to {folder}/",
                        markup=False)
        return
    name = registry.resolve("generator", generator, GENERATORS)
    gen = GENERATORS[name]
    if features is not None and features < gen.min_features:
        raise UsageError(f"generator '{name}' needs at least {gen.min_features} features")
    if (why := too_big(generated_bytes(samples, n_features(name, features)))) is not None:
        raise UsageError(f"--samples {samples:,}: {why}; generate fewer rows")
    fmt = choose_format(output, format_.value if format_ else None)
    if output == "-" and fmt != "csv" and sys.stdout.isatty():
        raise UsageError(f"not writing binary {fmt.upper()} data to a terminal; pass -o FILE or "
                         "pipe it into a program")
    arrays = generate(name, samples, features, classes, noise, seed)
    if output == "-":
        with until_the_reader_leaves():
            sys.stdout.flush()
            for piece in encode_chunks(*arrays, fmt):  # a pipeline's reader starts at once
                sys.stdout.buffer.write(piece)
                sys.stdout.buffer.flush()
        return
    path = Path(output)
    write_new_file(path, encode(*arrays, fmt), force)
    stderr().print(f"wrote {samples} rows to {path}")


# --- eval, predict, export, runs: using a trained model ------------------------------------

ModelArg = Annotated[str, typer.Argument(
    help="A run directory (it holds model.keras, config.yaml and labels.json), or a bare .keras "
         "file. Loaded in Keras's safe mode: files with Python code (Lambda layers) are refused.",
    metavar="RUN", show_default=False)]
TargetOpt = Annotated[Optional[str], typer.Option(
    "--target", metavar="COLUMN", help="The label (or value) column of --data. Default: the "
    "run's target column; y for a bare .keras file.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors on stderr.")]


@app.command("eval", epilog=EXIT_CODES_HELP)
def eval_(
    model: ModelArg,
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", metavar="FILE",
        help="Score the rows of this CSV file or .npz archive (- for a CSV on stdin), or the "
             "pictures of a folder of class folders, instead of the run's test rows; labels "
             "are mapped through the run's labels.json.")] = None,
    target: TargetOpt = None,
    loss: Annotated[Optional[str], typer.Option(
        "--loss", metavar="NAME", help="The loss to report (default: the run's, or the one "
        "recorded in a .keras file). Also tells a classifier from a regressor.")] = None,
    metrics: Annotated[Optional[list[str]], typer.Option(
        "--metrics", "-m", metavar="NAMES", help="Metrics to compute instead of the run's, e.g. "
        "--metrics accuracy,auc. Repeatable.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as one JSON "
                                           "document on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FILE.png", help="Classifiers: also draw the confusion matrix into "
        "this PNG file.", show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained model: on the run's own test rows, or on --data FILE.

    The test rows are recreated exactly as in training (same file, seed and split). Prints a
    metrics table on stderr; classifiers also get a confusion matrix and per-class precision
    and recall, regressors MAE, RMSE and R².
    """
    from nntrain.use.evaluate import evaluate

    names = [n.strip() for m in metrics or [] for n in m.split(",") if n.strip()]
    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: the picture is a PNG; name a file ending in .png")
    result = evaluate(model, data, target=target, loss=loss,
                      metrics=names if metrics is not None else None)
    if plot is not None:
        if not result.classes:
            raise UsageError("--plot draws a confusion matrix, which only classifiers have")
        from nntrain.plots import plot_confusion_matrix

        plot_confusion_matrix(result.confusion, result.classes, plot,
                              title=f"confusion matrix, {result.rows} rows")
    if not quiet:
        err = stderr()
        what = "test rows" if result.data == "test" else f"rows of {result.data}"
        err.print(f"{result.model}: {result.rows} {what}", markup=False)
        err.print(value_table("metrics", result.metrics))
        if result.classes:
            print_classes(err, result)
    if json_out:
        print(json.dumps(result.to_json()))


@app.command(epilog=EXIT_CODES_HELP)
def predict(
    model: ModelArg,
    data: Annotated[str, typer.Option(
        "--data", "-d", metavar="FILE", help="The CSV file to predict (- for stdin): a header "
        "row and the run's feature columns; other columns are ignored. Or a picture (PNG, "
        "JPEG, BMP, GIF), or a folder of them: one row per picture, its path first.",
        show_default=False)],
    fmt: Annotated[RowFormat, typer.Option(
        "--format", "-f", metavar="csv|jsonl", help="csv (with a header) or jsonl (one JSON "
        "object per line, same fields).")] = RowFormat.csv,
) -> None:
    """Write one prediction per input row to stdout.

    Classifiers: the predicted label (in the run's own label names) and one probability column
    per class, p_LABEL (p_cat, p_dog, ...). Regressors: the predicted value(s). Streams: rows
    are read, predicted and written chunk by chunk, so input of any length works in a pipe.
    """
    from nntrain.use.predict import predict as predict_rows

    def note(text: str) -> None:
        stderr().print(f"note: {text}", markup=False)

    with until_the_reader_leaves():
        for text in predict_rows(model, data, fmt=fmt.value, on_note=note):
            sys.stdout.write(text)


@app.command(epilog=EXIT_CODES_HELP)
def explain(
    model: ModelArg,
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", metavar="FILE", help="Explain the rows of this CSV file (- for stdin) "
        "instead of the run's test rows. gradients reads only the feature columns; "
        "permutation needs the target column too.")] = None,
    method: Annotated[ExplainMethod, typer.Option(
        "--method", metavar="gradients|permutation",
        help="gradients: integrated gradients, per row and column. permutation: how much "
             "worse the run's first metric gets when each column is shuffled, over all rows.")
    ] = ExplainMethod.gradients,
    baseline: Annotated[Optional[BaselineKind], typer.Option(
        "--baseline", metavar="mean|min|zeros", help="The row attributions are measured from: "
        "the training rows' mean (the default, recorded in the run), their minimum, or "
        "zeros (the only one for a bare .keras file).", show_default=False)] = None,
    class_name: Annotated[Optional[str], typer.Option(
        "--class", metavar="NAME", help="Classifiers: explain this class's probability "
        "instead of the predicted class's.", show_default=False)] = None,
    fmt: Annotated[RowFormat, typer.Option(
        "--format", "-f", metavar="csv|jsonl", help="csv (with a header) or jsonl (one JSON "
        "object per line, same fields).")] = RowFormat.csv,
    repeats: Annotated[int, typer.Option(
        "--repeats", metavar="N", help="permutation: shuffles per column.")] = 5,
    loss: Annotated[Optional[str], typer.Option(
        "--loss", metavar="NAME", help="A bare .keras file that records no loss: the one it "
        "was trained with, which tells a classifier from a regressor.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="FILE.png", help="Also draw the global importance as a bar chart "
        "into this PNG file; for a model of two inputs, beside it each input's attribution over "
        "the plane, with the decision boundary.", show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """Explain a trained model's predictions: which input columns drove them.

    gradients (integrated gradients) writes one line per row on stdout: the row's number, the
    attribution of every input column (they sum to prediction - baseline_prediction, checked
    within 1% of the output's range), the explained class, the prediction and the baseline's.
    permutation writes one line per column. Either way a table of global importance goes to
    stderr. Streams: rows are explained and written chunk by chunk.
    """
    from nntrain.use.explain import explain as explain_rows

    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: the picture is a PNG; name a file ending in .png")
    if plot is not None and not plot.parent.is_dir():
        raise UsageError(f"--plot {plot}: {plot.parent} is not a directory")
    done = explain_rows(model, data, method=method.value,
                        baseline=baseline.value if baseline else None, class_name=class_name,
                        fmt=fmt.value, repeats=repeats, loss=loss)
    with until_the_reader_leaves():
        for text in done.chunks:
            sys.stdout.write(text)
    summary = done.summary
    if plot is not None:
        from nntrain.use.explain import plot_importance

        plot_importance(summary, plot, done.plane())
    if not quiet:
        err = stderr()
        what = "test rows" if summary.data == "test" else f"rows of {summary.data}"
        err.print(f"{summary.model}: {summary.rows} {what}", markup=False)
        err.print(importance_table(summary))
        if summary.method == "gradients":
            verdict = ("every row's attributions sum to prediction - baseline_prediction "
                       "within 1% of the output's range" if not summary.rows_beyond else
                       f"warning: {summary.rows_beyond} rows miss completeness by more than "
                       f"1% of the output's range even at {summary.most_steps} steps")
            err.print(f"{verdict} (largest gap {summary.largest_gap:.2%}, at most "
                      f"{summary.most_steps} steps)", markup=False)


@app.command(epilog=EXIT_CODES_HELP)
def export(
    model: ModelArg,
    fmt: Annotated[ExportFormat, typer.Option(
        "--format", "-f", metavar="savedmodel|tflite|onnx",
        help="savedmodel (TensorFlow Serving), tflite (devices) or onnx (needs "
             "pip install 'nntrain\\[onnx]').", show_default=False)],
    quantize: Annotated[Optional[Quantization], typer.Option(
        "--quantize", metavar="float16|int8", help="TFLite only: float16 weights, or int8 "
        "weights and activations (calibrated on the run's training rows).")] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="PATH", help="Where to write it. Default: RUN/export/ "
        "(model.tflite, model-int8.tflite, saved_model/, model.onnx).")] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", "-d", metavar="FILE", help="CSV rows (or a folder of pictures) to check "
        "(and calibrate) the export with, instead of the run's own data; needed for a bare "
        ".keras file.")] = None,
    tolerance: Annotated[Optional[float], typer.Option(
        "--tolerance", min=0.0, help="Accepted difference from the Keras model, relative to "
        "max(1, largest output): the largest one (default 1e-4; float16 1e-2), or for int8 the "
        "mean one (default 0.05).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a trained model for serving or devices, checked against the Keras model.

    The export is run on up to 256 rows of the data and compared with the Keras model; the
    largest difference is reported on stderr, and an export beyond tolerance is an error (nothing
    is written). Prints the path written on stdout.
    """
    from nntrain.use.export import export_model

    done = export_model(model, fmt.value, quantize=quantize.value if quantize else None, output=output, force=force, data=data,
                        tolerance=tolerance)
    if not quiet:
        what = f"{done.format} ({done.quantize})" if done.quantize else done.format
        stderr().print(f"exported {what}, {done.size:,} bytes; checked on {done.rows} rows: "
                        f"max abs difference from Keras {done.max_diff:.3g}, mean "
                        f"{done.mean_diff:.3g} (tolerance: {done.statistic} {done.tolerance:g})",
                        markup=False)
    print(done.path)


@app.command(epilog=EXIT_CODES_HELP)
def runs(
    directory: Annotated[str, typer.Argument(help="The runs directory.", metavar="DIR")] = "runs",
    sort: Annotated[Optional[str], typer.Option(
        "--sort", metavar="KEY", help="name, started, status, epochs, or a metric such as "
        "test.accuracy or validation.loss (best first; a bare name means the headline "
        "split).")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Reverse the order.")] = False,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also list staging directories "
                                       "(.NAME.partial) with nothing to resume yet.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a "
                                           "table.")] = False,
) -> None:
    """List past runs: name, start time, status, epochs and headline metrics (oldest first).

    The headline metrics are the test loss and the first metric, or the validation ones when
    a run has no test rows. The listing is the command's output, so it goes to stdout.
    """
    from nntrain.runs.listing import list_runs, sort_runs

    found = list_runs(directory, include_incomplete=all_)
    if sort is not None:
        found = sort_runs(found, sort, reverse=reverse)
    elif reverse:
        found = found[::-1]
    if json_out:
        print(json.dumps([r.to_json() for r in found]))
        return
    if not found:
        stderr().print(f"no runs in {directory}", markup=False)
        return
    # In a pipe the table is data: never wrapped or cut to a terminal's width.
    width = None if sys.stdout.isatty() else 1_000
    with until_the_reader_leaves():
        Console(highlight=False, width=width).print(runs_table(found, sort))


# --- sweep -------------------------------------------------------------------------------

@app.command(epilog=EXIT_CODES_HELP)
def sweep(
    path: Annotated[Path, typer.Argument(
        metavar="SWEEP", help="A sweep file (YAML) to run or continue, or a sweep directory "
        "to show its leaderboard.", show_default=False)],
    storage: Annotated[Optional[str], typer.Option(
        "--storage", metavar="URL", envvar="NNTRAIN_SWEEP_STORAGE",
        help="Any Optuna storage, shared by every worker: postgresql://user@host/db, "
             "mysql://..., sqlite:///file.db or journal:FILE. Default: a SQLite file in the "
             "sweep directory.", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N",
                                      help="Worker processes on this machine.")] = 1,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", metavar="DIR", help="The sweep directory. Default: next to the sweep file, "
        "named like it (sweeps/moons.yaml -> sweeps/moons).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Continue a sweep whose search space "
                                        "changed since it started.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the leaderboard as JSON on "
                                           "stdout instead of the sweep directory.")] = False,
    top: Annotated[int, typer.Option("--top", min=0, metavar="N", help="Rows of the "
                                     "leaderboard table shown at the end.")] = 5,
    quiet: QuietOpt = False,
    worker: Annotated[int, typer.Option("--worker", hidden=True)] = 0,
) -> None:
    """Search for the best config: run a sweep file's trials, or continue them.

    Each trial is a normal run directory in the sweep directory; leaderboard.csv, best.yaml
    and the plots are written at the end. Run the same command again after Ctrl-C or a kill
    to continue; run it on several machines with one --storage to share the work. Prints
    the sweep directory on stdout (or the leaderboard with --json).
    """
    from nntrain.training.loop import StopRequest

    if path.is_dir():
        return _sweep_show(path, storage, json_out)
    if not path.exists():
        raise UsageError.in_file(path, "no such sweep file or sweep directory")
    from nntrain.sweep import report
    from nntrain.sweep.run import open_study, start_workers, wait_workers, work
    from nntrain.sweep.spec import load_sweep

    spec = load_sweep(path, directory)
    study = open_study(spec, storage, force=force)
    err = stderr()
    stop = StopRequest()
    tag = f"[worker {worker}] " if jobs > 1 or worker else ""

    def on_signal(signum: int, frame: Any) -> None:
        if stop:  # the second Ctrl-C stops at once
            raise Interrupted(signum)
        stop.request(signum)
        if not quiet and not worker:
            err.print("stopping after the current step and saving the trial (Ctrl-C again to "
                      "stop at once)")

    def on_trial(t: Any) -> None:
        if quiet:
            return
        params = " ".join(f"{k}={short_value(v)}" for k, v in t.params.items())
        value = "" if t.value is None else f"{spec.spec.metric} {t.value:.4f}  "
        what = {"finished": "", "pruned": "pruned  ", "failed": "FAILED  "}[t.state]
        again = f" (again, was {t.retry_of})" if t.retry_of is not None else ""
        line = (f"{tag}trial {t.number}{again}: {what}{value}{params}  "
                f"{t.epochs} epochs {t.seconds:.1f}s")
        if t.error:
            line += f"  ({t.error})"
        err.print(line, markup=False)

    children = start_workers(spec, str(path), storage, jobs - 1) if jobs > 1 else []
    try:
        with signals(on_signal):
            work(spec, study, stop=stop, on_trial=on_trial)
    finally:
        codes = wait_workers(children)
    if worker:
        return
    failed = [c for c in codes if c not in (0, 130, 143)]
    if failed:
        err.print(f"nntrain: {len(failed)} of the {len(codes)} other workers failed "
                  f"(exit {failed[0]}); their errors are above", markup=False)
    if stop:
        raise Interrupted(stop.signum or 2, "sweep stopped between trials; run the same "
                          "command again to continue it")
    board = _sweep_board(spec, study)
    report.write_outputs(board, study, spec.directory,
                         spec.base.config.output.model_dump(mode="json"), spec.spec.plots)
    if not quiet:
        # The table is for reading: never cut to the 80 columns of a pipe or a log file.
        print_leaderboard(err if sys.stderr.isatty() else Console(
            file=sys.stderr, highlight=False, width=200), board, top)
        best = board.best
        tested = report.best_test_metrics(best) if best else None
        if tested:
            err.print("best trial on the test rows (reported once, never used to select): "
                      + ", ".join(f"{k} {v:.4f}" for k, v in tested.items()), markup=False)
        if board.counted() < spec.spec.trials:
            err.print(f"{board.counted()} of {spec.spec.trials} trials are done; the rest are "
                      "running on other workers", markup=False)
        err.print(f"sweep directory: {spec.directory}", markup=False)
    if json_out:
        print(json.dumps(board.to_json()), flush=True)
    else:
        print(spec.directory, flush=True)
    if failed:
        raise typer.Exit(EXIT_FAILURE)


def _sweep_board(spec: Any, study: Any) -> Any:
    from nntrain.sweep import report

    board = report.leaderboard(study, spec.spec.metric, spec.direction,
                               [d.key for d in spec.dimensions], spec.spec.trials)
    report.run_paths(board, spec.directory)
    return board


def _sweep_show(directory: Path, storage: str | None, json_out: bool) -> None:
    """`nntrain sweep DIR`: the leaderboard of a sweep, read from its study (live while it
    runs), as a table on stdout or JSON."""
    from nntrain.sweep.run import SWEEP_JSON, open_storage
    from nntrain.sweep import report

    info_path = directory / SWEEP_JSON
    if not info_path.is_file():
        raise UsageError(f"{directory}: not a sweep directory (no {SWEEP_JSON})")
    info = json.loads(info_path.read_text())
    url = storage or info["storage"]
    if url == "study.db":
        url = f"sqlite:///{(directory / url).resolve()}"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=info["study"], storage=open_storage(url))
    except KeyError:
        raise UsageError(f"--storage: no study '{info['study']}' there") from None
    keys = list(study.user_attrs.get("sweep", {}).get("space", {}))
    board = report.leaderboard(study, info["metric"], info["direction"], keys, info["trials"])
    report.run_paths(board, directory.resolve())
    if json_out:
        print(json.dumps(board.to_json()))
        return
    width = None if sys.stdout.isatty() else 1_000
    with until_the_reader_leaves():
        print_leaderboard(Console(highlight=False, width=width), board, len(board.rows))


# --- entry point -------------------------------------------------------------------------

def _report(exc: NntrainError) -> None:
    from nntrain.config import locate

    err = stderr()
    for p in exc.problems:
        where = locate(p, exc.locator)
        line = f"{where}: {p.message}" if where else f"nntrain: {p.message}"
        if exc.hint and p is exc.problems[-1]:
            line += f"; {exc.hint}"
        err.print(line, markup=False)


def _usage_message(exc: Any) -> str:
    """Click's message, with one suggestion in the house's words: "(did you mean '--force'?)"
    rather than a list of possible options."""
    from typer._click import exceptions as click

    if isinstance(exc, click.NoSuchOption) and exc.possibilities:
        suggestion = did_you_mean(exc.option_name, exc.possibilities)
        return f"no such option: {exc.option_name}{suggestion}"
    choice = re.search(r"'([^']*)' is not one of ('.*?')\.?$", getattr(exc, "message", ""))
    if isinstance(exc, click.BadParameter) and exc.param is not None and choice:
        # A value outside an option's Enum: said as nntrain's own checks say it.
        option = max(getattr(exc.param, "opts", None) or [str(exc.param.name)], key=len)
        value, choices = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        return (f"{option}: expected one of {', '.join(choices)}, got '{value}'"
                f"{did_you_mean(value, choices)}")
    message = exc.format_message().rstrip(".")
    if isinstance(exc, click.UsageError) and ". Did you mean " in message:  # commands
        head, _, name = message.partition(". Did you mean ")
        message = f"{head} (did you mean {name.rstrip('?')}?)"
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. --debug may appear anywhere on the line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("NNTRAIN_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    _State.argv = args
    # Typer (0.29) ships its own copy of Click; its exceptions live here.
    from typer._click import exceptions as click

    try:
        # Not standalone: Click's usage errors come here, to be one line like every other error
        # rather than a five-line box; --help and typer.Exit return their exit code.
        with signals(_on_signal):
            code = app(args=args, prog_name="nntrain", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.NoArgsIsHelpError as exc:  # `nntrain` alone: the help, as before
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "nntrain"
        print(f"{command}: {_usage_message(exc)} (see '{command} --help')", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"nntrain: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except NntrainError as exc:
        if debug:
            traceback.print_exc()
        _report(exc)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a message
        if debug:
            traceback.print_exc()
        else:
            print(f"nntrain: internal error: {type(exc).__name__}: {exc} "
                  "(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_FAILURE
