"""k-fold cross-validation: data.split.folds: K.

The rows that are not test rows are dealt into K folds (stratified for classifiers, unless
data.split.stratify is false). Fold k's model trains on the other K-1 folds and is validated on
fold k; everything learned from training rows (input normalization, target scaling, balanced
class weights) is learned again from that fold's training rows. Every fold is a complete run
directory in RUN_DIR/folds/fold-k; RUN_DIR's own model.keras is a copy of the fold with the
lowest validation loss, which eval and predict use, and its metrics.json holds the mean of every
metric over the folds, their standard deviation, and each fold's numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from nntrain import backend
from nntrain.training.class_weights import resolve_class_weight
from nntrain.training.per_class import PER_CLASS
from nntrain.training.prepare import Prepared, monitors, target_scale_of
from nntrain.data.baseline import BASELINE
from nntrain.data.dataset import Dataset
from nntrain.data.preprocess import PREPROCESSING, fit_normalization
from nntrain.errors import ConfigError, Interrupted
from nntrain.model import build_model
from nntrain.runs.record import config_text, manifest
from nntrain.runs.rundir import CONFIG, LABELS, METRICS, MODEL, RunDir, timestamp
from nntrain.tf import import_keras

FOLDS = "folds"


def fold_of_rows(y: np.ndarray | None, n: int, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, 0..folds-1: dealt round-robin over a seeded permutation, per class when
    ``y`` is given, so that every fold has each class in about the same proportion."""
    rs = np.random.RandomState([seed & 0xFFFFFFFF, 16])
    out = np.empty(n, dtype=np.int64)
    if y is None:
        out[rs.permutation(n)] = np.arange(n) % folds
        return out
    start = 0  # each class continues the deal where the previous one ended: sizes stay even
    for c in np.unique(y):
        rows = rs.permutation(np.flatnonzero(y == c))
        out[rows] = (start + np.arange(len(rows))) % folds
        start += len(rows)
    return out


def fold_datasets(ds: Dataset, folds: int, seed: int, stratify: bool, task: str,
                  normalize: str) -> list[Dataset]:
    """The K datasets: fold k's rows validate, the others train; the test rows stay as they
    are. The input normalization is fitted on each one's training rows."""
    n = len(ds.x_train)
    if n < folds:
        raise ConfigError.at(("data", "split", "folds"), f"{folds} folds need at least "
                             f"{folds} training rows, got {n}")
    labels = ds.y_train.argmax(axis=1) if task == "onehot" else ds.y_train
    fold = fold_of_rows(labels if stratify else None, n, folds, seed)
    out = []
    for k in range(folds):
        train, val = fold != k, fold == k
        x_train = ds.x_train[train]
        pre = dataclasses.replace(ds.preprocessing,
                                  normalization=fit_normalization(normalize, x_train))
        out.append(dataclasses.replace(
            ds, x_train=x_train, y_train=ds.y_train[train], x_val=ds.x_train[val],
            y_val=ds.y_train[val], preprocessing=pre, notes=[]))
    return out


def check_folds(prepared: Any, resume: Any) -> None:
    """What k-fold runs cannot do (yet): be resumed, stream, or spread over machines."""
    where = ("data", "split", "folds")
    if resume is not None:
        raise ConfigError.at(where, "a k-fold run cannot be resumed; train it again")
    if prepared.dataset.streamed:
        raise ConfigError.at(where, "k-fold needs the rows in memory; remove data.stream")
    if prepared.strategy is not None:
        raise ConfigError.at(where, "k-fold runs train on one device; remove "
                             "distribution.strategy")
    if prepared.dataset.table is not None:
        raise ConfigError.at(where, "k-fold of a table with categorical columns (or "
                             "data.columns) is not built yet; remove folds")


def summarize(fold_metrics: list[dict[str, dict[str, float]]]
              ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(mean, standard deviation) of every metric of every split over the folds. The standard
    deviation is the population one (numpy's default, ddof=0), as scikit-learn reports
    cross-validation scores."""
    mean: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for split in fold_metrics[0]:
        for name in fold_metrics[0][split]:
            values = np.asarray([m[split][name] for m in fold_metrics], dtype=np.float64)
            mean.setdefault(split, {})[name] = float(values.mean())
            std.setdefault(split, {})[name] = float(values.std())
    return mean, std


class _NoRetracingWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_retracing() -> Iterator[None]:
    """Each fold is a new model with new compiled functions: TensorFlow's warning that
    functions are traced again and again is expected here, and says nothing to the user."""
    logger, quiet = logging.getLogger("tensorflow"), _NoRetracingWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def train_folds(prepared: Prepared, *, train_one: Callable[..., Any], name: str,
                argv: list[str], force: bool, stop: Any, on_epoch: Any, on_batch: Any,
                painter: Any) -> tuple[RunDir, Any, Prepared]:
    """Train the K models into one run directory named ``name``, each with ``train_one``
    (train._train); returns (run, TrainResult, prepared) as train.train does, the
    TrainResult's metrics being the folds' means."""
    config = prepared.config
    task = prepared.targets.task
    split = config.data.split
    k_folds = split.folds
    seed = config.training.seed
    stratify = split.stratify if split.stratify is not None else task != "regression"
    datasets = fold_datasets(prepared.dataset, k_folds, seed, stratify, task,
                             getattr(config.data, "normalize", "none"))
    prepared.notes.append(f"{k_folds} models were trained, each validated on its own fold of "
                          f"the {len(prepared.dataset.x_train)} rows that are not test rows "
                          "(the epoch lines above come fold after fold)")
    out = config.output
    params = prepared.model.count_params()
    started = timestamp()
    run = RunDir.create(out.dir, name, explicit_name=out.name is not None, force=force,
                        need_bytes=params * 4 * 8 * k_folds)
    results = []
    try:
        with _quiet_retracing():
            for k, ds in enumerate(datasets, start=1):
                fold = _fold_prepared(prepared, ds, k)
                try:
                    fold_run, result, _ = train_one(
                        fold, argv=argv, force=True, resume=None, stop=stop, on_epoch=on_epoch,
                        on_batch=on_batch, painter=painter, root=str(run.file(FOLDS)))
                except Interrupted as exc:
                    raise Interrupted(exc.signum, f"interrupted in fold {k} of {k_folds}; a "
                                      "k-fold run cannot be resumed, so nothing was kept"
                                      ) from None
                results.append((fold_run, result, fold))
        best = min(range(k_folds), key=lambda i: results[i][1].metrics.get(
            "validation", {}).get("loss", np.inf))
        outcome = _write_parent(run, prepared, results, best, argv, started)
        run.commit()
    except BaseException:
        run.discard()
        raise
    finally:
        run.release()  # the run name's lock (runs/guard.py)
    return run, outcome, prepared


def _fold_prepared(prepared: Prepared, ds: Dataset, k: int) -> Prepared:
    """Fold k ready to train: its own run name, model, target scaling and class weights."""
    keras = import_keras()
    config = prepared.config
    output = config.output.model_copy(update={"name": f"fold-{k}", "plots": False})
    loaded = dataclasses.replace(prepared.loaded,
                                 config=config.model_copy(update={"output": output}))
    # Every fold starts from the same weights; on JAX without importing TensorFlow (its
    # start-up lines would land on stderr, and it costs seconds).
    backend.set_random_seed(keras, config.training.seed)
    scale = target_scale_of(config, ds, prepared.targets.task)
    model = build_model(config.model, tuple(ds.x_train.shape[1:]),
                        normalization=ds.preprocessing.normalization)
    if scale is not None:
        model.add(scale.layer(keras))
    weights = resolve_class_weight(config.training.class_weight, targets=prepared.targets,
                                   y_train=ds.y_train, streamed=False)
    fold = Prepared(loaded, ds, model, prepared.targets, class_weight=weights,
                    target_scale=scale)
    fold.monitors = monitors(fold)
    return fold


def _write_parent(run: RunDir, prepared: Prepared, results: list[Any], best: int,
                  argv: list[str], started: str) -> Any:
    """RUN_DIR's own files: the config, the chosen fold's model and files, the folds' means.
    Returns the chosen fold's TrainResult with the means, std and every fold's numbers."""
    fold_run, best_result, best_fold = results[best]
    fold_dir = run.file(FOLDS) / fold_run.name
    mean, std = summarize([r.metrics for _, r, _ in results])
    folds = [{"fold": k, **r.metrics,
              **({"early_stopping": r.early_stopping} if r.early_stopping else {})}
             for k, (_, r, _) in enumerate(results, start=1)]
    run.write_text(CONFIG, config_text(prepared.loaded, run))
    run.write_json(METRICS, {**mean, "std": std, "folds": folds, "model_fold": best + 1})
    # What eval, predict and explain read beside the model: the chosen fold's own files.
    for name in (MODEL, LABELS, PREPROCESSING, BASELINE, PER_CLASS):
        if (fold_dir / name).exists():
            shutil.copy2(fold_dir / name, run.file(name))
    epochs = sum(r.epochs_run for _, r, _ in results)
    seconds = sum(r.seconds for _, r, _ in results)
    record = manifest(prepared.loaded, prepared.dataset, prepared.targets.task, run, "finished",
                      command=argv, started=started, seconds=seconds,
                      epochs=epochs) | best_fold.learned()
    record["data"]["rows"] = {"train": len(prepared.dataset.x_train), "validation": 0,
                              "test": len(prepared.dataset.x_test)}
    record["folds"] = {"count": len(results), "model_fold": best + 1,
                       "model": f"{FOLDS}/{fold_run.name}/{MODEL}",
                       "chosen_by": "lowest validation loss"}
    run.write_json("manifest.json", record)
    return dataclasses.replace(best_result, history={}, metrics=mean, epochs_run=epochs,
                               seconds=seconds, early_stopping=None, folds=folds, std=std,
                               model_fold=best + 1)
