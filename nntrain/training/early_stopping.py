"""What early stopping did, in plain data: for the terminal, --json/--jsonl and metrics.json.

The last epoch line shows the last epoch's numbers, while the final metrics are those of the
restored best epoch; this record says which epoch is which.
"""

from __future__ import annotations

from typing import Any

from nntrain.training.checkpoint import LoopState
from nntrain.config.schema import TrainingConfig


def early_stopping_record(cfg: TrainingConfig, monitor: str | None,
                          state: LoopState) -> dict[str, Any] | None:
    """{monitor, stopped_epoch (null: ran every epoch), epochs_run, best_epoch, best,
    restored_epoch (null: the last epoch's weights were kept)}; None without early stopping."""
    es = cfg.early_stopping
    if es is None or monitor is None:
        return None
    best_epoch = state.best_epoch or None
    return {"monitor": monitor,
            "stopped_epoch": state.epoch if state.stopped_early else None,
            "epochs_run": state.epoch,
            "patience": es.patience,
            "best_epoch": best_epoch,
            "best": state.best,
            "restored_epoch": best_epoch if es.restore_best_weights else None}


def describe(record: dict[str, Any]) -> str:
    """One line for the terminal."""
    monitor = record["monitor"]
    if record["stopped_epoch"] is not None:
        head = (f"early stopping: stopped at epoch {record['stopped_epoch']} ({monitor} did not "
                f"improve for {record['patience']} epochs)")
    else:
        head = f"early stopping: ran all {record['epochs_run']} epochs"
    best = "" if record["best"] is None else f" ({monitor} {record['best']:.6g})"
    if record["restored_epoch"] is not None:
        return f"{head}; restored the weights of epoch {record['restored_epoch']}{best}"
    return (f"{head}; kept the last epoch's weights (restore_best_weights: false; best was "
            f"epoch {record['best_epoch']}{best})")
