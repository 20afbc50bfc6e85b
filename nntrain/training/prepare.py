"""Prepare a run: load the data, fit the targets' contract to it, build the model, and check
what fit() will compile with, so that `validate` and `train` report every config error before
a run directory exists. Nothing is written here."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nntrain import backend, registry
from nntrain.training.class_weights import by_label, resolve_class_weight
from nntrain.config import LoadedConfig
from nntrain.config.schema import RunConfig
from nntrain.data import tabular
from nntrain.data.dataset import Dataset, load_dataset
from nntrain.errors import ConfigError, did_you_mean
from nntrain.runs.record import resolved_config
from nntrain.sizes import check_model
from nntrain.model import build_loss, build_metrics, build_model, build_optimizer, input_shape_of
from nntrain.training.target_scale import TargetScale, fit_target_scale
from nntrain.targets import Targets, fit_targets
from nntrain.tf import import_keras
from nntrain.training import distribute
from nntrain.training.loop import steps_per_epoch


@dataclass
class Prepared:
    """Everything checked and built; nothing written yet."""

    loaded: LoadedConfig
    dataset: Dataset
    model: Any
    targets: Targets  # what the targets mean; written into the run (labels.json)
    notes: list[str] = field(default_factory=list)
    monitors: dict[str, str] = field(default_factory=dict)  # see monitors()
    # tf.distribute's strategy (TensorFlow) or keras.distribution's DataParallel (JAX); None
    # on one device.
    strategy: Any = None
    chief: bool = True  # False on the other workers of a multi-worker run: they write nothing
    class_weight: dict[int, float] | None = None  # training.class_weight by class index
    target_scale: TargetScale | None = None  # data.target_normalize; undone inside the model

    @property
    def config(self) -> RunConfig:
        return self.loaded.config

    def learned(self) -> dict[str, Any]:
        """For the manifest: the class weights and target scaling learned from the training
        rows, when the config asks for them."""
        out: dict[str, Any] = {}
        if self.class_weight is not None:
            out["class_weight"] = by_label(self.class_weight, self.targets)
        if self.target_scale is not None:
            out["target_normalize"] = self.target_scale.to_json()
        return out

    @property
    def steps_per_execution(self) -> int:
        """What the model is compiled with: Keras 3.15 fails to run several steps per call
        under a tf.distribute strategy ("You must feed a value for placeholder tensor"), so a
        strategy forces 1; the results are the same. JAX's DataParallel runs several."""
        return self.config.training.steps_per_execution if self.strategy is None \
            or distribute.is_jax_distribution(self.strategy) else 1

    @property
    def distribution(self) -> dict[str, Any]:
        """Where it trains, for the manifest and -v: the strategy and its replica count."""
        return {"strategy": self.config.distribution.strategy,
                "replicas": distribute.replicas(self.strategy)}

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where variables are created: the strategy's scope, to be mirrored."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def running(self) -> contextlib.AbstractContextManager[Any]:
        """Where the model trains, evaluates and predicts: on JAX, keras.distribution's
        scope (fit reads it at each call to split the batches); tf.distribute needs none."""
        return self.scope() if distribute.is_jax_distribution(self.strategy) \
            else contextlib.nullcontext()


def with_backend(loaded: LoadedConfig, *, contact_workers: bool = True) -> LoadedConfig:
    """Choose the run's Keras backend and make it this process's, before keras is imported;
    the config gets it filled in, so that config.yaml records it and --resume keeps it."""
    config = loaded.config
    dist = config.distribution
    # Mirrored runs on either backend (tf.distribute or keras.distribution); several machines
    # only through tf.distribute. A cluster that is missing is told first, on any backend.
    if dist.strategy == "multi_worker":
        distribute.cluster_of(dist)
    name = backend.choose(config.training.backend, needs_tensorflow=(
        f"distribution.strategy: {dist.strategy}" if dist.strategy == "multi_worker"
        else None))
    training = config.training.model_copy(update={"backend": name})
    loaded = dataclasses.replace(loaded, config=config.model_copy(update={"training": training}))
    if dist.strategy == "multi_worker" and contact_workers:
        # Before the import: a missing worker, or one whose config differs, fails at once.
        distribute.find_peers(dist, resolved_config(loaded))
        # When a worker stops, TensorFlow's C++ runtime logs the abort of every collective on
        # the workers left (seven ERROR lines each) before nntrain says in one line which
        # worker stopped and how to resume (distribute.lost_peer). Only FATAL, unless the
        # user chose a level; TF_CPP_MIN_LOG_LEVEL=2 (or 0) shows them.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    backend.use(name)
    if name == "jax":
        distribute.split_jax_cpu(dist)  # before jax starts
    return loaded


def prepare(loaded: LoadedConfig, *, contact_workers: bool = True) -> Prepared:
    """Load the data, check it against the model and loss, and build the model. A
    multi_worker config without ``contact_workers`` (`nntrain validate`) is checked as far as
    it goes without the other workers: its cluster is read, nobody is called."""
    loaded = with_backend(loaded, contact_workers=contact_workers)
    keras = import_keras()
    config = loaded.config
    if config.distribution.strategy == "multi_worker" and not contact_workers:
        strategy, cluster = None, None
    else:
        # First: distribution.cpu_devices must come before TensorFlow runs anything.
        strategy, cluster = distribute.make_strategy(config.distribution)
    seed = config.training.seed
    backend.set_random_seed(keras, seed)
    ds = load_dataset(config.data, seed, loaded.base_dir,
                      stratify_default=registry.loss_task(config.training.loss.name)
                      != "regression")
    targets = fit_targets(config, ds)
    shape = input_shape_of(config.model)
    data_shape = list(ds.x_train.shape[1:])
    if shape is not None and shape != data_shape:
        raise ConfigError.at(("model", "input_shape"), f"the data has input shape {data_shape} "
                             f"({ds.n_features} features) but the model expects {shape}")
    weights = resolve_class_weight(config.training.class_weight, targets=targets,
                                   y_train=ds.y_train, streamed=ds.streamed)
    scale = target_scale_of(config, ds, targets.task)
    check_model(config.model.layers, int(np.prod(shape or data_shape)))
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if ds.table is not None:  # categorical columns: the model encodes them first
            model = tabular.build_model(config.model, ds.table,
                                        after=[scale.layer(keras)] if scale is not None else [])
        else:
            model = build_model(config.model, tuple(shape or data_shape),
                                normalization=ds.preprocessing.normalization)
            if scale is not None:
                model.add(scale.layer(keras))
    out_shape = tuple(model.outputs[0].shape) if model.outputs else ()
    if len(out_shape) != 2:  # fit would fail: "target and output must have the same rank"
        raise ConfigError.at(("model", "layers"), f"the data has inputs of shape {data_shape} "
                             f"per row ({ds.source}) and the model's output has shape "
                             f"{list(out_shape)}; its output needs one value per row and unit: "
                             "add {type: flatten} first, or give inputs of shape [features]")
    distribute.prepare_model(model, strategy)
    prepared = Prepared(loaded, ds, model, targets, notes=list(ds.notes),
                        strategy=strategy, chief=cluster is None or cluster.chief,
                        class_weight=weights, target_scale=scale)
    # Dry-build what fit() compiles with, so that a misspelled argument of the loss, optimizer
    # or a metric is reported by `validate`, and by `train` before it creates a run directory.
    problems = []
    for build in (lambda: build_loss(config.training), lambda: build_metrics(config.training),
                  lambda: build_optimizer(config.training, steps_per_epoch(
                      len(ds.x_train), config.training.batch_size))):
        try:
            build()
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems[0].message, problems=problems)
    prepared.monitors = monitors(prepared)
    return prepared


def target_scale_of(config: RunConfig, ds: Dataset, task: str) -> TargetScale | None:
    """data.target_normalize, fitted on the training targets; regression only."""
    kind = getattr(config.data, "target_normalize", "none")
    if kind == "none":
        return None
    if task != "regression":
        raise ConfigError.at(("data", "target_normalize"), f"scales a regression target; "
                             f"{config.training.loss.name} is a classification loss (remove "
                             "data.target_normalize)")
    if ds.streamed:
        raise ConfigError.at(("data", "target_normalize"), "needs the training targets' mean "
                             "and spread, which data.stream does not hold; remove it")
    return fit_target_scale(kind, ds.y_train)


def metric_names(config: RunConfig) -> list[str]:
    """The names Keras logs: loss and each metric, with val_ versions when validating."""
    return ["loss", *(m.args.get("name", m.name) for m in config.training.metrics)]


def monitors(prepared: Prepared) -> dict[str, str]:
    """What early stopping and reduce-on-plateau watch; 'val_x' falls back to 'x' when there are
    no validation rows, which the run's notes say."""
    cfg = prepared.config.training
    # k-fold runs validate every model on its own fold (folds.py)
    has_val = len(prepared.dataset.x_val) > 0 or bool(
        getattr(prepared.config.data.split, "folds", None))
    names = metric_names(prepared.config)
    logged = names + [f"val_{n}" for n in names] if has_val else names
    out: dict[str, str] = {}
    for key, section in (("early_stopping", cfg.early_stopping),
                         ("lr_schedule", cfg.lr_schedule)):
        monitor = getattr(section, "monitor", None)
        if monitor is None:
            continue
        if monitor.startswith("val_") and not has_val and monitor[4:] in names:
            prepared.notes.append(f"no validation rows: {key} monitors '{monitor[4:]}' instead "
                                  f"of '{monitor}'")
            monitor = monitor[4:]
        if monitor not in logged:
            raise ConfigError.at(("training", key, "monitor"), f"'{monitor}' is not logged"
                                 f"{did_you_mean(monitor, logged)}; choose one of: "
                                 f"{', '.join(logged)}")
        out[key] = monitor
    return out


def compile_model(prepared: Prepared) -> None:
    cfg = prepared.config.training
    with prepared.scope():
        prepared.model.compile(
            optimizer=build_optimizer(cfg, steps_per_epoch(len(prepared.dataset.x_train),
                                                           cfg.batch_size)),
            loss=build_loss(cfg), metrics=build_metrics(cfg),
            steps_per_execution=prepared.steps_per_execution)
