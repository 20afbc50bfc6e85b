"""The run's record: the resolved config, the manifest, the history, and how two resolved
configs differ (for --resume and the workers of a multi-worker run)."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import yaml

import nntrain
from nntrain.config import LoadedConfig
from nntrain.data.dataset import Dataset
from nntrain.data.sources import resolve_paths
from nntrain.runs.rundir import CONFIG, RunDir, timestamp


def history_csv(rows: list[dict[str, float]]) -> str:
    """history.csv: one row per epoch, every logged quantity a column."""
    if not rows:
        return "epoch\n"
    keys = list(rows[0])
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    lines = [",".join(keys)]
    for r in rows:
        lines.append(",".join(_fmt(r.get(k, "")) for k in keys))
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def resolved_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The config with every default filled in and data paths made absolute."""
    data = loaded.config.model_dump(mode="json")
    data["data"] = resolve_paths(loaded.config.data, loaded.base_dir).model_dump(mode="json")
    return data


def manifest(loaded: LoadedConfig, ds: Dataset, task: str, run: RunDir, status: str, *,
             command: list[str], started: str, seconds: float = 0.0, epochs: int = 0,
             resumes: list[dict[str, Any]] | None = None,
             distribution: dict[str, Any] | None = None) -> dict[str, Any]:
    """manifest.json: what ran, on which data, with which versions, and how far it got."""
    import keras

    from nntrain import backend

    name = loaded.config.training.backend or backend.DEFAULT
    return {
        "name": run.name,
        "status": status,  # running, finished, interrupted, diverged or failed
        "started": started,
        "updated": timestamp(),
        "seconds": round(seconds, 3),
        "epochs_completed": epochs,
        "config_file": loaded.source.name,
        "command": command,
        "resumes": resumes or [],
        "seed": loaded.config.training.seed,
        "backend": name,
        "task": task,
        "distribution": distribution or {"strategy": "none", "replicas": 1},
        "data": {
            "source": ds.source,
            "fingerprint": ds.fingerprint,
            "rows": {"train": len(ds.x_train), "validation": len(ds.x_val),
                     "test": len(ds.x_test)},
            "features": ds.feature_names,
        },
        "versions": {
            "nntrain": nntrain.__version__,
            **backend.version(name),
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "platform": platform.platform(),
    }


def config_text(loaded: LoadedConfig, run: RunDir) -> str:
    """config.yaml: the resolved config, with a header saying where it came from."""
    header = (f"# Resolved by nntrain {nntrain.__version__} from {loaded.source.name}"
              + (f" with {' '.join(loaded.overrides.values())}"
                 if loaded.overrides else "")
              + "\n# Every default is filled in; train it again with: "
              f"nntrain train {run.path / CONFIG}\n")
    return header + yaml.safe_dump(resolved_config(loaded), sort_keys=False)


def config_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """Differences between two resolved configs, as 'key.path: old -> new' lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            out += config_changes(old.get(key), new.get(key), sub)
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]
