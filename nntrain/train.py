"""Prepare a run (data, semantic checks, model) and train it. No YAML parsing, no printing:
progress goes to the ``on_epoch`` callback the caller passes in."""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import nntrain
from nntrain.config import LoadedConfig
from nntrain.config.schema import CsvData, RunConfig
from nntrain.data.dataset import Dataset, load_dataset
from nntrain.errors import ConfigError, DataError, TrainingDiverged
from nntrain.model import build_loss, build_metrics, build_model, build_optimizer, input_shape_of
from nntrain.runs import CONFIG, HISTORY, LABELS, MANIFEST, METRICS, RunDir, timestamp
from nntrain.tf import import_keras

BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"}
SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy",
                  "categorical_hinge", "kl_divergence"}

EpochCallback = Callable[[int, int, dict[str, float], float], None]


def task_of(config: RunConfig) -> str:
    """'binary', 'multiclass' (integer labels), 'onehot' or 'regression', from the loss."""
    loss = config.training.loss.name
    if loss in BINARY_LOSSES:
        return "binary"
    if loss in SPARSE_LOSSES:
        return "multiclass"
    if loss in ONE_HOT_LOSSES:
        return "onehot"
    return "regression"


@dataclass
class Prepared:
    """Everything checked and built; nothing written yet."""

    loaded: LoadedConfig
    dataset: Dataset
    model: Any
    task: str
    n_classes: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> RunConfig:
        return self.loaded.config


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    metrics: dict[str, dict[str, float]]
    epochs_run: int
    seconds: float


def _output_layer(config: RunConfig) -> tuple[int | None, int | None, str | None]:
    """(index, units, activation name) of the last layer that has units."""
    for i in range(len(config.model.layers) - 1, -1, -1):
        args = config.model.layers[i].args
        if "units" in args:
            act = args.get("activation")
            act = act.get("name") if isinstance(act, dict) else act
            return i, args["units"], act
    return None, None, None


def check_task(config: RunConfig, ds: Dataset, task: str) -> tuple[Dataset, int | None]:
    """Labels, output layer and loss must fit each other; mismatches are config errors."""
    loss = config.training.loss.name
    idx, units, act = _output_layer(config)
    where = ("model", "layers", idx) if idx is not None else ("model", "layers")
    y_all = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    if task == "regression":
        if units is not None and units != 1:
            raise ConfigError.at(where + ("units",), f"{loss} on one target column needs 1 "
                                 f"output unit, got {units}")
        for name in ("y_train", "y_val", "y_test"):
            setattr(ds, name, getattr(ds, name).astype(np.float32))
        return ds, None
    if ds.labels is None and not np.all(np.equal(np.mod(y_all, 1), 0)):
        raise DataError(f"{loss} is a classification loss but the target has non-integer values "
                        f"(e.g. {y_all[np.mod(y_all, 1) != 0][0]:g}); use a regression loss "
                        "such as mse, or integer class labels")
    y_all = y_all.astype(np.int64)
    if y_all.size and y_all.min() < 0:
        raise DataError(f"class labels must be 0 or more, found {y_all.min()}")
    n_classes = len(ds.labels) if ds.labels else int(y_all.max()) + 1 if y_all.size else 2
    if task == "binary":
        if n_classes > 2:
            raise ConfigError.at(("training", "loss"), f"{loss} needs labels 0 and 1, but the "
                                 f"data has {n_classes} classes; use "
                                 f"sparse_categorical_crossentropy with units: {n_classes} and "
                                 "activation: softmax")
        if units is not None and units != 1:
            raise ConfigError.at(where + ("units",), f"{loss} needs 1 output unit (the "
                                 f"probability of class 1), got {units}")
        if act == "softmax":
            raise ConfigError.at(where + ("activation",), "softmax over 1 unit always outputs "
                                 f"1.0; use activation: sigmoid with {loss}")
        n_classes = 2
    else:
        if units is not None and units == 1:
            raise ConfigError.at(where + ("units",), f"1 output unit cannot tell {n_classes} "
                                 f"classes apart with {loss}; use units: {n_classes} and "
                                 "activation: softmax")
        if units is not None and units < n_classes:
            raise ConfigError.at(where + ("units",), f"the labels have {n_classes} classes but "
                                 f"the output layer has {units} units; use units: {n_classes}")
        n_classes = units or n_classes
    for name in ("y_train", "y_val", "y_test"):
        y = getattr(ds, name).astype(np.int64)
        if task == "onehot":
            y = np.eye(n_classes, dtype=np.float32)[y]
        elif task == "binary":
            y = y.astype(np.float32)
        setattr(ds, name, y)
    return ds, n_classes


def prepare(loaded: LoadedConfig) -> Prepared:
    """Load the data, check it against the model and loss, and build the model."""
    keras = import_keras()
    config = loaded.config
    seed = config.training.seed
    keras.utils.set_random_seed(seed)
    task = task_of(config)
    ds = load_dataset(config.data, seed, loaded.base_dir,
                      stratify_default=task != "regression")
    ds, n_classes = check_task(config, ds, task)
    shape = input_shape_of(config.model)
    data_shape = list(ds.x_train.shape[1:])
    if shape is not None and shape != data_shape:
        raise ConfigError.at(("model", "input_shape"), f"the data has input shape {data_shape} "
                             f"({ds.n_features} features) but the model expects {shape}")
    model = build_model(config.model, tuple(shape or data_shape))
    return Prepared(loaded, ds, model, task, n_classes)


def _callbacks(keras: Any, prepared: Prepared, run: RunDir | None,
               on_epoch: EpochCallback | None, rows: list[dict[str, float]]) -> list[Any]:
    cfg = prepared.config.training
    has_val = len(prepared.dataset.x_val) > 0
    total = cfg.epochs

    def monitor(name: str) -> str:
        if name.startswith("val_") and not has_val:
            prepared.notes.append(f"no validation rows: monitoring '{name[4:]}' instead of "
                                  f"'{name}'")
            return name[4:]
        return name

    class Recorder(keras.callbacks.Callback):
        """History row per epoch, written to the run directory as it happens."""

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            logs = _loss_first({k: float(v) for k, v in (logs or {}).items()})
            row = {"epoch": epoch + 1, **logs}
            rows.append(row)
            if run is not None:
                run.write_text(HISTORY, history_csv(rows))
            bad = [k for k, v in logs.items() if not math.isfinite(v)]
            if bad:
                self.model.stop_training = True
                self.diverged = (epoch + 1, bad[0], logs[bad[0]])
            if on_epoch is not None:
                on_epoch(epoch + 1, total, logs, time.perf_counter() - self.t0)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True

    recorder = Recorder()
    recorder.diverged = None
    callbacks = [recorder]
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor(es.monitor), patience=es.patience, min_delta=es.min_delta,
            restore_best_weights=es.restore_best_weights))
    if cfg.lr_schedule is not None and cfg.lr_schedule.type == "reduce_on_plateau":
        s = cfg.lr_schedule
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor(s.monitor), factor=s.factor, patience=s.patience, min_lr=s.min_lr))
    return callbacks


def _loss_first(logs: dict[str, float]) -> dict[str, float]:
    """loss, metrics, then val_loss, val_metrics: the order people read them in."""
    return dict(sorted(logs.items(), key=lambda kv: (kv[0].startswith("val_"),
                                                     kv[0] not in ("loss", "val_loss"))))


def history_csv(rows: list[dict[str, float]]) -> str:
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


def steps_per_epoch(prepared: Prepared) -> int:
    return max(1, math.ceil(len(prepared.dataset.x_train) / prepared.config.training.batch_size))


def fit(prepared: Prepared, run: RunDir | None = None,
        on_epoch: EpochCallback | None = None) -> TrainResult:
    """Compile and train the prepared model; evaluate it on every split that has rows."""
    keras = import_keras()
    cfg = prepared.config.training
    ds = prepared.dataset
    model = prepared.model
    model.compile(optimizer=build_optimizer(cfg, steps_per_epoch(prepared)),
                  loss=build_loss(cfg), metrics=build_metrics(cfg),
                  steps_per_execution=cfg.steps_per_execution)
    rows: list[dict[str, float]] = []
    callbacks = _callbacks(keras, prepared, run, on_epoch, rows)
    has_val = len(ds.x_val) > 0
    t0 = time.perf_counter()
    model.fit(ds.x_train, ds.y_train, batch_size=cfg.batch_size, epochs=cfg.epochs,
              shuffle=cfg.shuffle, verbose=0, callbacks=callbacks,
              validation_data=(ds.x_val, ds.y_val) if has_val else None)
    seconds = time.perf_counter() - t0
    diverged = callbacks[0].diverged
    if diverged is None and rows and not all(math.isfinite(v) for v in rows[-1].values()):
        diverged = (rows[-1]["epoch"], "loss", rows[-1].get("loss"))
    if diverged is not None or (rows == [] and cfg.epochs > 0):
        epoch, metric, value = diverged or (1, "loss", float("nan"))
        raise TrainingDiverged(f"training diverged: {metric} became {value} in epoch {epoch}",
                               hint="try a lower learning rate (training.optimizer."
                               "learning_rate), normalized inputs, or a smaller batch_size")
    metrics = evaluate_splits(model, prepared)
    history: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            history.setdefault(k, []).append(v)
    return TrainResult(history, metrics, len(rows), seconds)


def evaluate_splits(model: Any, prepared: Prepared) -> dict[str, dict[str, float]]:
    ds = prepared.dataset
    batch = max(prepared.config.training.batch_size, 1024)  # bigger batches, same numbers
    out: dict[str, dict[str, float]] = {}
    for split, x, y in (("train", ds.x_train, ds.y_train), ("validation", ds.x_val, ds.y_val),
                        ("test", ds.x_test, ds.y_test)):
        if len(x):
            res = model.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True)
            out[split] = _loss_first({k: float(v) for k, v in res.items()})
    return out


def resolved_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The config with every default filled in and data paths made absolute."""
    data = loaded.config.model_dump(mode="json")
    if isinstance(loaded.config.data, CsvData) and loaded.config.data.path != "-":
        data["data"]["path"] = str((loaded.base_dir / loaded.config.data.path).resolve())
    return data


def manifest(prepared: Prepared, run: RunDir, argv: list[str], started: str, status: str,
             result: TrainResult | None = None) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    ds = prepared.dataset
    return {
        "name": run.name,
        "status": status,
        "started": started,
        "finished": timestamp(),
        "seconds": round(result.seconds, 3) if result else None,
        "epochs_completed": result.epochs_run if result else 0,
        "config_file": prepared.loaded.source.name,
        "command": argv,
        "seed": prepared.config.training.seed,
        "task": prepared.task,
        "data": {
            "source": ds.source,
            "fingerprint": ds.fingerprint,
            "rows": {"train": len(ds.x_train), "validation": len(ds.x_val),
                     "test": len(ds.x_test)},
            "features": ds.feature_names,
        },
        "versions": {
            "nntrain": nntrain.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "platform": platform.platform(),
    }


def write_run(prepared: Prepared, run: RunDir, result: TrainResult, argv: list[str],
              started: str) -> None:
    """Everything a finished run holds; the manifest is written last."""
    header = (f"# Resolved by nntrain {nntrain.__version__} from {prepared.loaded.source.name}"
              + (f" with {' '.join('--set ' + e for e in prepared.loaded.overrides.values())}"
                 if prepared.loaded.overrides else "")
              + f"\n# Every default is filled in; train it again with: "
              f"nntrain train {run.path / CONFIG}\n")
    run.write_text(CONFIG, header + yaml.safe_dump(resolved_config(prepared.loaded),
                                                  sort_keys=False))
    run.write_text(HISTORY, history_csv([
        {k: result.history[k][i] for k in result.history}
        for i in range(result.epochs_run)]))
    run.write_json(METRICS, result.metrics)
    if prepared.dataset.labels:
        run.write_json(LABELS, prepared.dataset.labels)
    run.save_model(prepared.model)
    run.write_json(MANIFEST, manifest(prepared, run, argv, started, "finished", result))


def train(loaded: LoadedConfig, *, argv: list[str] | None = None, force: bool = False,
          on_epoch: EpochCallback | None = None,
          on_prepared: Callable[[Prepared], None] | None = None) -> tuple[RunDir, TrainResult,
                                                                          Prepared]:
    """The whole pass: prepare, reserve the run directory, fit, write, move into place."""
    prepared = prepare(loaded)
    if on_prepared is not None:
        on_prepared(prepared)
    out = loaded.config.output
    name = out.name or _default_name(loaded.source.name)
    params = prepared.model.count_params()
    run = RunDir.create(out.dir, name, explicit_name=out.name is not None, force=force,
                        need_bytes=params * 4 * 4)
    started = timestamp()
    try:
        result = fit(prepared, run, on_epoch)
        write_run(prepared, run, result, argv or sys.argv, started)
        run.commit()
    except BaseException:
        run.discard()
        raise
    return run, result, prepared


def _default_name(source_name: str) -> str:
    stem = Path(source_name).stem
    return stem if stem and not stem.startswith((".", "<", "-")) else "run"
