"""What a sweep leaves: the leaderboard (CSV, JSON, a table), best.yaml and Optuna's plots.

The leaderboard lists each trial once, best first: finished trials by their metric, then pruned
ones (by their metric when pruned), then failed ones with their reason. Attempts that were
stopped or lost and ran again, and trials that stood down because the sweep was full, are the
study's bookkeeping, not trials, and are left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nntrain.sweep.run import SURPLUS

LEADERBOARD = "leaderboard.csv"
BEST = "best.yaml"
PLOTS = {"history.png": "plot_optimization_history",
         "parallel_coordinates.png": "plot_parallel_coordinate",
         "importances.png": "plot_param_importances"}

_STATES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed",
           "RUNNING": "running", "WAITING": "waiting"}


@dataclass
class Row:
    trial: int
    state: str
    params: dict[str, Any]
    value: float | None
    epochs: int | None
    seconds: float | None
    run: str | None
    note: str = ""

    def to_json(self, metric: str) -> dict[str, Any]:
        return {"trial": self.trial, "state": self.state, "params": self.params,
                metric: self.value, "epochs": self.epochs, "seconds": self.seconds,
                "run": self.run, "note": self.note}


@dataclass
class Leaderboard:
    metric: str
    direction: str
    keys: list[str]  # the searched parameters, in the sweep file's order
    rows: list[Row] = field(default_factory=list)
    wanted: int = 0

    @property
    def best(self) -> Row | None:
        return next((r for r in self.rows if r.state == "finished"), None)

    def counted(self) -> int:
        return sum(r.state in ("finished", "pruned") for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "trials": self.wanted,
                "best": self.best.trial if self.best else None,
                "leaderboard": [r.to_json(self.metric) for r in self.rows]}

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["trial", "state", *self.keys, self.metric, "epochs", "seconds", "run",
                         "note"])
        for r in self.rows:
            writer.writerow([r.trial, r.state, *(_cell(r.params.get(k)) for k in self.keys),
                             _cell(r.value), _cell(r.epochs), _cell(r.seconds), r.run or "",
                             r.note])
        return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def leaderboard(study: Any, metric: str, direction: str, keys: list[str],
                wanted: int) -> Leaderboard:
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    rows: list[Row] = []
    for t in trials:
        state = _STATES.get(t.state.name, t.state.name.lower())
        ended = t.user_attrs.get("ended", {})
        if t.user_attrs.get(SURPLUS) or (state == "failed" and t.number in retried
                                          and "error" not in ended):
            continue
        value = t.value if state == "finished" else ended.get("value")
        note = ended.get("error", "")
        if state == "pruned":
            note = f"pruned after epoch {ended.get('pruned_at', '?')}"
        if state == "failed" and not note:
            note = "stopped; it runs again when the sweep continues"
        rows.append(Row(t.number, state, dict(t.params), value, ended.get("epochs"),
                        ended.get("seconds"), t.user_attrs.get("where", {}).get("run"), note))
    sign = -1.0 if direction == "maximize" else 1.0
    order = {"finished": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4}

    def key(r: Row) -> tuple[int, float, int]:
        v = r.value if r.value is not None and math.isfinite(r.value) else math.inf
        return (order.get(r.state, 5), sign * v if v != math.inf else math.inf, r.trial)

    rows.sort(key=key)
    return Leaderboard(metric, direction, keys, rows, wanted)


def run_paths(board: Leaderboard, directory: Path) -> None:
    """Trial runs are named in the study; on disk they sit in this sweep directory."""
    for r in board.rows:
        if r.run:
            r.run = str(directory / r.run)


def write_outputs(board: Leaderboard, study: Any, directory: Path,
                  base_output: dict[str, Any], plots: bool = True) -> list[Path]:
    """leaderboard.csv, best.yaml and, with ``plots``, the PNGs (without, none is left from
    an earlier call: it would show fewer trials); returns what was written."""
    from nntrain.runs.rundir import atomic_write_text

    written = [directory / LEADERBOARD]
    atomic_write_text(directory / LEADERBOARD, board.csv())
    best = board.best
    if best is not None and best.run and (Path(best.run) / "config.yaml").is_file():
        atomic_write_text(directory / BEST, best_yaml(board, best, base_output, directory))
        written.append(directory / BEST)
    if plots:
        written += draw_plots(study, directory)
    else:
        for name in PLOTS:
            (directory / name).unlink(missing_ok=True)
    return written


def best_yaml(board: Leaderboard, best: Row, base_output: dict[str, Any],
              directory: Path) -> str:
    """The best trial's resolved config, writing its runs where the base config does."""
    config = yaml.safe_load((Path(best.run) / "config.yaml").read_text())
    config["output"] = base_output
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in best.params.items())
    header = (f"# The best trial of the sweep (trial {best.trial}, {board.metric} "
              f"{best.value:.6g}): {params}\n"
              f"# Every default is filled in; train it with: nntrain train {directory / BEST}\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def draw_plots(study: Any, directory: Path) -> list[Path]:
    """Optuna's own matplotlib plots, for the trials that finished."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    from nntrain.runs.rundir import atomic_write

    varied = [k for k in complete[0].params
              if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
    written: list[Path] = []
    for name, function in PLOTS.items():
        if function == "plot_param_importances" and (len(complete) < 2 or not varied):
            continue  # nothing to compare yet
        with warnings.catch_warnings():
            # matplotlib on an axis whose values are all equal (one choice): harmless.
            warnings.simplefilter("ignore", UserWarning)
            if function == "plot_param_importances":
                # PED-ANOVA is Optuna's own; the default (fANOVA) needs scikit-learn.
                ax = vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
            else:
                ax = getattr(vis, function)(study)
        figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = directory / name
        atomic_write(path, lambda fh, f=figure: f.savefig(fh, format="png", dpi=100))
        plt.close(figure)
        written.append(path)
    return written


def best_test_metrics(best: Row) -> dict[str, float] | None:
    """The best trial's metrics on the test rows: reported once, never used to select."""
    path = Path(best.run or "") / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("test")
