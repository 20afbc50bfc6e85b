"""What a person sees while `nntrain train` runs; part of the CLI layer.

The CLI creates one ``TrainingDisplay`` and hands its methods to training.train as callbacks.

- On an interactive terminal: the model summary, then a live display at the bottom of the
  screen (the epoch out of the total, a bar over the batches with an ETA, the running loss and
  metrics), one line per finished epoch with its validation metrics above it, and at the end
  the final metrics and the run directory.
- Anywhere else (a pipe, a log file, CI, ``TERM=dumb``) and under ``NO_COLOR``: the same
  text with exactly one plain line per epoch; no escape codes, no carriage returns, and no
  per-batch callback at all, so that a log costs training nothing.
- ``--quiet`` prints nothing; ``--verbose`` adds the run's details and per-epoch learning rate
  and throughput.

``epoch_event`` and ``end_event`` are the shapes of ``--jsonl``'s lines on stdout.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from nntrain.training.loop import learning_rate

QUIET, NORMAL, VERBOSE = 0, 1, 2


def make_console(file: IO[str] | None = None, *, force_terminal: bool | None = None) -> Console:
    """A console for standard error. NO_COLOR (https://no-color.org) means no escape codes at
    all: no colours, no bold, and no live display, which needs cursor movements."""
    no_color = os.environ.get("NO_COLOR", "") != ""
    return Console(file=file or sys.stderr, highlight=False, soft_wrap=True,
                   force_terminal=force_terminal, no_color=no_color,
                   color_system=None if no_color else "auto")


def fmt(value: float) -> str:
    """4 decimals for everyday values, significant digits for tiny or huge ones."""
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


class TrainingDisplay:
    """Progress of one training run on a console; callbacks for nntrain.training.train.train."""

    def __init__(self, console: Console, verbosity: int = NORMAL):
        self.console = console
        self.verbosity = verbosity
        # Live only where the cursor can be moved back up: an interactive terminal that has
        # escape codes to spare (color_system None is NO_COLOR, see make_console).
        self.live = (verbosity > QUIET and console.is_interactive
                     and console.color_system is not None)
        # None, not a no-op, when not live: the training loop then skips the call per batch.
        self.on_batch = self._batch if self.live else None
        self._progress: Progress | None = None
        self._run_task: TaskID | None = None
        self._batch_task: TaskID | None = None
        self._epoch = 1  # the epoch running now
        self._epochs = 0
        self._model: Any = None
        self._rows = 0

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display; it disappears, the lines printed above it stay."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def begin(self, prepared: Any, summary: RenderableType, *, first_epoch: int = 1) -> None:
        """Show what is about to train, then start the live display."""
        cfg = prepared.config.training
        ds = prepared.dataset
        self._model = prepared.model
        self._rows = len(ds.x_train)
        self._epochs = cfg.epochs
        self._epoch = first_epoch
        if self.verbosity == QUIET:
            return
        self.console.print(summary)
        self.console.print(f"data: {ds.source}, {len(ds.x_train)} train / {len(ds.x_val)} "
                           f"validation / {len(ds.x_test)} test rows, {_inputs(ds)}; "
                           f"model: {prepared.model.count_params():,} parameters", markup=False)
        if self.verbosity >= VERBOSE:
            for line in run_details(prepared):
                self.console.print(line, markup=False)
        if self.live:
            self._start_live(steps=max(1, math.ceil(self._rows / cfg.batch_size)),
                             show_batches=math.ceil(self._rows / cfg.batch_size)
                             > prepared.steps_per_execution)

    def _start_live(self, steps: int, show_batches: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=28),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console, transient=True, refresh_per_second=8,
            # stdout carries data (--jsonl lines): never pull it into the display.
            redirect_stdout=False)
        self._run_task = self._progress.add_task(self._epoch_label(), total=self._epochs,
                                                 completed=self._epoch - 1, metrics="")
        # Keras reports progress once per steps_per_execution batches: when an epoch has no
        # more batches than that, a bar over them would only jump from empty to full.
        if show_batches:
            self._batch_task = self._progress.add_task(self._batch_label(0, steps), total=steps,
                                                       metrics="")
        self._progress.start()

    def _epoch_label(self) -> str:
        width = len(str(self._epochs))
        return f"epoch {min(self._epoch, self._epochs):>{width}}/{self._epochs}"

    def _batch_label(self, done: int, steps: int) -> str:
        return f"batch {done:>{len(str(steps))}}/{steps}"

    def _batch(self, done: int, steps: int, logs: dict[str, float]) -> None:
        if self._progress is None or self._run_task is None:
            return
        # Keras reports the last step of each steps_per_execution group, which can run past
        # the end of the epoch.
        done = min(done, steps)
        metrics = "  ".join(f"{k} {fmt(float(v))}" for k, v in
                            sorted(logs.items(), key=lambda kv: kv[0] != "loss"))
        self._progress.update(self._run_task, completed=self._epoch - 1 + done / steps,
                              metrics=metrics)
        if self._batch_task is not None:
            self._progress.update(self._batch_task, completed=done, total=steps,
                                  description=self._batch_label(done, steps))

    def epoch(self, epoch: int, total: int, logs: dict[str, float], seconds: float) -> None:
        """One line per finished epoch: its metrics, validation included, and its time."""
        self._epoch, self._epochs = epoch + 1, total
        if self.verbosity == QUIET:
            return
        width = len(str(total))
        line = Text()
        line.append(f"epoch {epoch:>{width}}/{total}", style="bold")
        for key, value in logs.items():
            line.append(f"  {key} ")
            line.append(fmt(value), style="cyan" if key.startswith("val_") else "")
        details = f"{seconds:.2f}s"
        if self.verbosity >= VERBOSE:
            lr = learning_rate(self._model)
            if lr is not None and "learning_rate" not in logs:
                line.append(f"  learning_rate {fmt(lr)}")
            if seconds > 0:
                details += f", {self._rows / seconds:,.0f} rows/s"
        line.append(f"  ({details})", style="dim")
        self.console.print(line)
        if self._progress is not None and self._run_task is not None:
            self._progress.update(self._run_task, completed=epoch,
                                  description=self._epoch_label())
            if self._batch_task is not None:
                steps = self._progress.tasks[self._batch_task].total or 1
                self._progress.reset(self._batch_task,
                                     description=self._batch_label(0, int(steps)))

    def end(self, renderables: Iterable[RenderableType]) -> None:
        """Stop the live display and print the closing lines (tables, the run directory)."""
        self.close()
        if self.verbosity == QUIET:
            return
        for r in renderables:
            self.console.print(r, markup=False) if isinstance(r, str) else self.console.print(r)


def run_details(prepared: Any) -> list[str]:
    """--verbose: where the config came from, the data and the training set-up."""
    loaded, ds, cfg = prepared.loaded, prepared.dataset, prepared.config.training
    sets = " ".join(loaded.overrides.values())
    features = ", ".join(ds.feature_names[:8]) + (", ..." if len(ds.feature_names) > 8 else "")
    classes = ""
    targets = prepared.targets
    if targets.n_classes:
        names = targets.labels or [str(i) for i in range(targets.n_classes)]
        classes = f", {targets.n_classes} classes ({', '.join(map(str, names[:10]))}" \
                  f"{', ...' if len(names) > 10 else ''})"
    steps = max(1, math.ceil(len(ds.x_train) / cfg.batch_size))
    optimizer = ", ".join([cfg.optimizer.name,
                           *(f"{k}={v}" for k, v in cfg.optimizer.args.items())])
    lines = [
        f"config: {Path(loaded.source.name).resolve()}" + (f" {sets}" if sets else ""),
        f"data: fingerprint {ds.fingerprint}",
        f"data: features {features}; task {targets.task}{classes}",
        f"training: loss {cfg.loss.name}, optimizer {optimizer}, {cfg.epochs} epochs of "
        f"{steps} batches of {cfg.batch_size} (steps_per_execution "
        f"{prepared.steps_per_execution}), seed {cfg.seed}",
        "distribution: strategy {strategy}, {replicas} replica(s)".format(
            **prepared.distribution),
    ]
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        monitor = prepared.monitors.get("early_stopping", es.monitor)
        lines.append(f"training: early stopping on {monitor}, patience {es.patience}")
    if cfg.lr_schedule is not None:
        lines.append(f"training: learning-rate schedule {cfg.lr_schedule.type}")
    return lines


def _finite(value: float) -> float | None:
    # NaN and Infinity are not JSON; a diverging epoch reports null.
    return value if math.isfinite(value) else None


def epoch_event(epoch: int, total: int, logs: dict[str, float], seconds: float) -> dict[str, Any]:
    """One --jsonl line per finished epoch: {"event": "epoch", "epoch", "epochs", the metrics
    (loss, accuracy, val_loss, ...), "seconds", "time"}."""
    return {"event": "epoch", "epoch": epoch, "epochs": total,
            **{k: _finite(float(v)) for k, v in logs.items()},
            "seconds": round(seconds, 4), "time": round(time.time(), 3)}


def end_event(document: dict[str, Any]) -> dict[str, Any]:
    """The last --jsonl line: the --json document with "event": "end" in front."""
    return {"event": "end", **document}


def _inputs(ds: Any) -> str:
    """'2 features', or for pictures 'inputs 32x32x1' (height x width x channels)."""
    shape = ds.x_train.shape[1:]
    return f"inputs {'x'.join(map(str, shape))}" if len(shape) > 1 else f"{ds.n_features} features"
