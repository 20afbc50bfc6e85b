"""What the commands show on a terminal: tables of models, metrics, classes and runs."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def stderr() -> Console:
    # Created per call so that tests capturing sys.stderr see the output.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
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


def folds_tables(result: Any) -> list[Table]:
    """k-fold runs: per split, each fold's value of every metric and their mean ± std."""
    tables: list[Table] = []
    for split, means in result.metrics.items():
        table = Table(title=f"{split} metrics of {len(result.folds)} folds (eval and predict "
                      f"use fold {result.model_fold})", title_justify="left")
        table.add_column("metric")
        for fold in result.folds:
            table.add_column(f"fold {fold['fold']}", justify="right")
        table.add_column("mean ± std", justify="right")
        for name, mean in means.items():
            table.add_row(name, *(f"{fold[split][name]:.4f}" for fold in result.folds),
                          f"{mean:.4f} ± {result.std[split][name]:.4f}")
        tables.append(table)
    return tables


def summary_table(model: Any) -> Table:
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


def value_table(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in values.items():
        table.add_row(name, "n/a" if value is None else f"{value:.4f}")
    return table


# Wider confusion matrices do not fit a terminal; --json has them whole.
MAX_TABLE_CLASSES = 12


def print_classes(err: Console, result: Any) -> None:
    classes = result.classes
    if len(classes) > MAX_TABLE_CLASSES:
        err.print(f"({len(classes)} classes: the confusion matrix and per-class metrics are in "
                  "--json)")
        return
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)",
                   title_justify="left")
    matrix.add_column("")
    for c in classes:
        matrix.add_column(c, justify="right")
    for c, row in zip(classes, result.confusion):
        matrix.add_row(c, *(str(v) for v in row))
    err.print(matrix)
    per_class = Table(title="per class", title_justify="left")
    for name in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(name, justify="left" if name == "class" else "right")
    for c in classes:
        m = result.per_class[c]
        per_class.add_row(c, *("n/a" if m[k] is None else f"{m[k]:.4f}"
                               for k in ("precision", "recall", "f1")), str(m["support"]))
    err.print(per_class)


def local_time(iso: str | None) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M") if iso else ""
    except ValueError:
        return iso or ""


def runs_table(found: list[Any], sort: str | None) -> Table:
    from nntrain.runs.listing import RUN_FIELDS

    extra = sort if sort is not None and sort not in (*RUN_FIELDS, "loss") else None
    table = Table(box=None, pad_edge=False)
    for name in ("run", "started", "status", "epochs", "on", "loss", "metric"):
        table.add_column(name, justify="right" if name in ("epochs", "loss") else "left")
    if extra:
        table.add_column(extra, justify="right")
    for r in found:
        started = local_time(r.started)
        epochs = "" if r.epochs is None else str(r.epochs)
        if r.max_epochs is not None and r.epochs is not None and r.max_epochs != r.epochs:
            epochs += f"/{r.max_epochs}"
        split = r.headline_split
        values = r.metrics.get(split, {}) if split else {}
        loss = values.get("loss")
        first = next(((k, v) for k, v in values.items() if k != "loss"), None)
        row = [r.name, started, r.status, epochs, split or "",
               "" if loss is None else f"{loss:.4f}",
               f"{first[0]} {first[1]:.4f}" if first else ""]
        if extra:
            value = r.metric(extra)
            row.append("" if value is None else f"{value:.4f}")
        table.add_row(*row)
    return table


def importance_table(summary: Any) -> Table:
    """explain's global importance, most important first."""
    if summary.method == "gradients":
        table = Table(title=f"integrated gradients: mean |attribution| to {summary.explained} "
                      f"(baseline: {summary.baseline})", title_justify="left")
        table.add_column("feature")
        table.add_column("mean |attribution|", justify="right")
        table.add_column("mean attribution", justify="right")
        for i in summary.importance:
            table.add_row(i.feature, f"{i.value:.4g}", f"{i.mean:+.3g}")
        return table
    table = Table(title=f"permutation importance: {summary.change} when a column is shuffled "
                  f"({summary.metric} {summary.score:.4f} as is; {summary.repeats} shuffles per "
                  "column)", title_justify="left")
    table.add_column("feature")
    table.add_column(summary.change.split()[0], justify="right")
    table.add_column("± std", justify="right")
    for i in summary.importance:
        table.add_row(i.feature, f"{i.value:.4g}", f"{i.spread:.2g}")
    return table


def short_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_leaderboard(err: Console, board: Any, top: int) -> None:
    """A sweep's leaderboard (nntrain.sweep.report.Leaderboard), its first ``top`` rows."""
    if top == 0 or not board.rows:
        return
    table = Table(title=f"leaderboard (best {min(top, len(board.rows))} of "
                  f"{len(board.rows)}; all in leaderboard.csv)", title_justify="left")
    # Headers without the section names, which the key paths mostly share.
    keys = [k.removeprefix("training.").removeprefix("model.") for k in board.keys]
    for name in ("trial", "state", *keys, board.metric, "epochs", "seconds"):
        table.add_column(name, justify="left" if name == "state" else "right")
    for r in board.rows[:top]:
        table.add_row(str(r.trial), r.state,
                      *(short_value(r.params.get(k, "")) for k in board.keys),
                      "" if r.value is None else f"{r.value:.4f}",
                      "" if r.epochs is None else str(r.epochs),
                      "" if r.seconds is None else f"{r.seconds:.1f}")
    err.print(table)
