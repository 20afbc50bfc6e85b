"""Past runs under a runs directory, for `nntrain runs`: one summary per run, sortable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nntrain import registry
from nntrain.errors import UsageError, did_you_mean
from nntrain.runs.guard import complete_all_staged
from nntrain.runs.rundir import CONFIG, MANIFEST, METRICS, MODEL, read_json

RUN_FIELDS = ("name", "started", "status", "epochs")
PARTIAL = ".partial"
SPLITS = ("test", "validation", "train")  # headline order: the first a run has


@dataclass
class RunSummary:
    """What `nntrain runs` shows of one run directory."""

    name: str
    path: Path
    status: str  # as the manifest records it (finished, interrupted, ...), or incomplete
    started: str | None = None  # ISO 8601, UTC
    seconds: float | None = None
    epochs: int | None = None  # completed
    max_epochs: int | None = None  # configured
    task: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def headline_split(self) -> str | None:
        """The split whose numbers headline the run: test, else validation, else train."""
        return next((s for s in SPLITS if self.metrics.get(s)), None)

    def metric(self, key: str) -> float | None:
        """'test.accuracy', or 'accuracy' on the headline split. metrics.json's other
        records (early_stopping, a k-fold run's folds and std) hold no metric of the run."""
        split, _, name = key.rpartition(".")
        if split and split not in SPLITS:
            return None
        values = self.metrics.get(split or self.headline_split or "", {})
        value = values.get(name) if isinstance(values, dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "status": self.status,
                "started": self.started, "seconds": self.seconds, "epochs": self.epochs,
                "max_epochs": self.max_epochs, "task": self.task, "metrics": self.metrics}


def list_runs(root: str | Path, *, include_incomplete: bool = False) -> list[RunSummary]:
    """Every run under root, oldest first.

    A run killed before it could move into place stays in its hidden staging directory,
    ``.NAME.partial``, to be resumed: with a manifest it is listed under NAME, as 'incomplete'
    (in progress or killed) unless the manifest says how it ended. Staging directories without
    a manifest are listed, as 'incomplete', only with ``include_incomplete``.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError.in_file(root, "no such runs directory")
    complete_all_staged(root)  # finished runs a kill left staged go into place first
    runs = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        staging = entry.name.startswith(".")
        if staging and not entry.name.endswith(PARTIAL):
            continue  # e.g. the .NAME.replaced-PID leftovers of --force
        has_manifest = (entry / MANIFEST).is_file()
        if staging and not (has_manifest or include_incomplete):
            continue
        if not staging and not (has_manifest or (entry / MODEL).is_file()):
            continue  # not a run directory
        runs.append(_summary(entry, staging))
    return sorted(runs, key=lambda r: (r.started or "", r.name))


def _summary(path: Path, staging: bool) -> RunSummary:
    manifest = _json_or_empty(path / MANIFEST)
    name = path.name[1:-len(PARTIAL)] if staging and manifest else path.name
    status = manifest.get("status") or ("incomplete" if staging else "unknown")
    if staging and status == "running":
        status = "incomplete"  # still running, or killed: nothing here can tell which
    return RunSummary(
        name=name, path=path, status=str(status),
        started=manifest.get("started"), seconds=manifest.get("seconds"),
        epochs=manifest.get("epochs_completed"), max_epochs=_configured_epochs(path),
        task=manifest.get("task"), metrics=_json_or_empty(path / METRICS))


def _json_or_empty(path: Path) -> dict[str, Any]:
    """A run's JSON file, or {} when it is missing or unreadable (the listing goes on)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _configured_epochs(path: Path) -> int | None:
    import yaml

    try:
        config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8"))
        epochs = config["training"]["epochs"]
        # A k-fold run trains every fold, and its manifest counts the epochs of all of them.
        folds = (config["data"].get("split") or {}).get("folds") or 1
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(epochs, int) or not isinstance(folds, int):
        return None
    return epochs * folds


def sort_runs(runs: list[RunSummary], key: str, *, reverse: bool = False) -> list[RunSummary]:
    """Sort by a field (name, started, status, epochs) or a metric ('test.accuracy'): the best
    run first; runs without the metric last."""
    if key in RUN_FIELDS:
        def field_value(r: RunSummary) -> Any:
            value = getattr(r, key)
            return (value is None, value if value is not None else 0)
        return sorted(runs, key=field_value, reverse=reverse)
    available = sorted({f"{s}.{m}" for r in runs for s, v in r.metrics.items()
                        if s in SPLITS and isinstance(v, dict) for m in v})
    bare = {k.split(".", 1)[1] for k in available}
    if key not in available and key not in bare:
        choices = [*RUN_FIELDS, *available]
        raise UsageError(f"--sort: no run has a metric '{key}'{did_you_mean(key, choices)}; "
                         f"choose one of: {', '.join(choices)}")
    name = key.rpartition(".")[2]
    smaller_first = not registry.bigger_is_better(name)  # the best run on top
    have = [r for r in runs if r.metric(key) is not None]
    missing = [r for r in runs if r.metric(key) is None]
    have.sort(key=lambda r: r.metric(key), reverse=not smaller_first)
    return (have[::-1] if reverse else have) + missing
