"""Prepare a run (data, semantic checks, model) and train it. No YAML parsing, no printing:
progress goes to the ``on_epoch`` callback the caller passes in."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import nntrain
from nntrain.config import LoadedConfig
from nntrain.config.schema import RunConfig
from nntrain.data.dataset import Dataset, load_dataset, resolve_paths
from nntrain.data.preprocess import PREPROCESSING
from nntrain.training import checkpoint, distribute
from nntrain.training.checkpoint import CHECKPOINT, Checkpoint, LoopState
from nntrain.errors import (
    ConfigError,
    Interrupted,
    NntrainError,
    TrainingDiverged,
    UsageError,
    did_you_mean,
)
from nntrain.training.loop import (
    BatchCallback,
    EpochCallback,
    StopRequest,
    loss_first,
    run_loop,
    steps_per_epoch,
)
from nntrain.model import build_loss, build_metrics, build_model, build_optimizer, input_shape_of
from nntrain.plots import Painter, plot_jobs
from nntrain.runs.rundir import (CONFIG, HISTORY, LABELS, MANIFEST, METRICS, BackgroundWriter, RunDir,
                          read_json, timestamp)
from nntrain.training.tensorboard_log import TENSORBOARD, TensorBoardLog
from nntrain.tf import import_keras

BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy", "hinge", "squared_hinge"}
SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy",
                  "categorical_hinge", "kl_divergence"}


def task_of(config: RunConfig) -> str:
    """'binary', 'multiclass' (integer labels), 'onehot' or 'regression', from the loss."""
    return task_of_loss(config.training.loss.name)


def task_of_loss(loss: str) -> str:
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
    monitors: dict[str, str] = field(default_factory=dict)  # see monitors()
    strategy: Any = None  # the tf.distribute strategy; None on one device
    chief: bool = True  # False on the other workers of a multi-worker run: they write nothing

    @property
    def config(self) -> RunConfig:
        return self.loaded.config

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where variables are created: the strategy's scope, to be mirrored."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


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
    """Labels, output layer and loss must fit each other; mismatches are config errors.
    Numeric labels that do not fit the output are mapped to class indices (index_labels)."""
    loss = config.training.loss.name
    idx, units, act = _output_layer(config)
    where = ("model", "layers", idx) if idx is not None else ("model", "layers")
    y_all = ds.all_targets()
    if task == "regression":
        if units is not None and units != 1:
            raise ConfigError.at(where + ("units",), f"{loss} on one target column needs 1 "
                                 f"output unit, got {units}")
        ds.encode_targets(task, None)
        return ds, None
    if ds.labels is None:
        if not np.all(np.equal(np.mod(y_all, 1), 0)):
            raise ConfigError.at(("training", "loss"), f"{loss} is a classification loss but "
                                 "the target has non-integer values (e.g. "
                                 f"{y_all[np.mod(y_all, 1) != 0][0]:g}); use a regression loss "
                                 "such as mse, or integer class labels")
        ds.index_labels(2 if task == "binary" else units)
    y_all = y_all.astype(np.int64)
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
    ds.encode_targets(task, n_classes)
    return ds, n_classes


def prepare(loaded: LoadedConfig) -> Prepared:
    """Load the data, check it against the model and loss, and build the model."""
    keras = import_keras()
    config = loaded.config
    # First: distribution.cpu_devices must come before TensorFlow runs anything.
    strategy, cluster = distribute.make_strategy(config.distribution)
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
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(config.model, tuple(shape or data_shape),
                            normalization=ds.preprocessing.normalization)
    distribute.prepare_model(model, strategy)
    prepared = Prepared(loaded, ds, model, task, n_classes, notes=list(ds.notes),
                        strategy=strategy, chief=cluster is None or cluster.chief)
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


def metric_names(config: RunConfig) -> list[str]:
    """The names Keras logs: loss and each metric, with val_ versions when validating."""
    return ["loss", *(m.args.get("name", m.name) for m in config.training.metrics)]


def monitors(prepared: Prepared) -> dict[str, str]:
    """What early stopping and reduce-on-plateau watch; 'val_x' falls back to 'x' when there are
    no validation rows, which the run's notes say."""
    cfg = prepared.config.training
    has_val = len(prepared.dataset.x_val) > 0
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


def compile_model(prepared: Prepared) -> None:
    cfg = prepared.config.training
    with prepared.scope():
        prepared.model.compile(
            optimizer=build_optimizer(cfg, steps_per_epoch(len(prepared.dataset.x_train),
                                                           cfg.batch_size)),
            loss=build_loss(cfg), metrics=build_metrics(cfg),
            # Keras 3.15 fails to run several steps per call under a tf.distribute strategy
            # ("You must feed a value for placeholder tensor"); the results are the same.
            steps_per_execution=cfg.steps_per_execution if prepared.strategy is None else 1)


def evaluate_splits(model: Any, prepared: Prepared) -> dict[str, dict[str, float]]:
    ds = prepared.dataset
    batch = max(prepared.config.training.batch_size, 1024)  # bigger batches, same numbers
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "validation", "test"):
        if len(ds.split(split)[0]):
            res = model.evaluate(**ds.inputs(split, batch), verbose=0, return_dict=True)
            out[split] = loss_first({k: float(v) for k, v in res.items()})
    return out


def resolved_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The config with every default filled in and data paths made absolute."""
    data = loaded.config.model_dump(mode="json")
    data["data"] = resolve_paths(loaded.config.data, loaded.base_dir).model_dump(mode="json")
    return data


def manifest(prepared: Prepared, run: RunDir, status: str, *, command: list[str],
             started: str, seconds: float = 0.0, epochs: int = 0,
             resumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    ds = prepared.dataset
    return {
        "name": run.name,
        "status": status,  # running, finished, interrupted, diverged or failed
        "started": started,
        "updated": timestamp(),
        "seconds": round(seconds, 3),
        "epochs_completed": epochs,
        "config_file": prepared.loaded.source.name,
        "command": command,
        "resumes": resumes or [],
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


def _config_text(prepared: Prepared, run: RunDir) -> str:
    header = (f"# Resolved by nntrain {nntrain.__version__} from {prepared.loaded.source.name}"
              + (f" with {' '.join('--set ' + e for e in prepared.loaded.overrides.values())}"
                 if prepared.loaded.overrides else "")
              + "\n# Every default is filled in; train it again with: "
              f"nntrain train {run.path / CONFIG}\n")
    return header + yaml.safe_dump(resolved_config(prepared.loaded), sort_keys=False)


def config_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """Differences between two resolved configs, as 'key.path: old -> new' lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            out += config_changes(old.get(key), new.get(key), sub)
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


@dataclass
class _Session:
    """One `nntrain train` invocation's view of its run: new or resumed."""

    run: RunDir
    state: LoopState
    checkpoint: Checkpoint | None
    started: str
    command: list[str]
    resumes: list[dict[str, Any]]


def _start(prepared: Prepared, argv: list[str], force: bool, root: str | None) -> _Session:
    out = prepared.config.output
    name = out.name or _default_name(prepared.loaded.source.name)
    params = prepared.model.count_params()
    # The model, the checkpoint (weights, optimizer slots, best weights) and their temporaries.
    run = RunDir.create(root or out.dir, name, explicit_name=out.name is not None,
                        force=force or root is not None, need_bytes=params * 4 * 8)
    return _Session(run, LoopState(), None, timestamp(), argv, [])


def _resume(prepared: Prepared, run_dir: Path, argv: list[str]) -> _Session:
    """Open an earlier run and check that this config may continue it."""
    run = RunDir.open(run_dir)
    old_manifest = read_json(run.file(MANIFEST))
    old = yaml.safe_load(run.file(CONFIG).read_text())
    new = resolved_config(prepared.loaded)
    changes = [c for c in config_changes(old, new)
               if not c.startswith(("training.epochs:", "output.", "distribution."))]
    if changes:
        raise UsageError("only training.epochs (and where it runs) may change when resuming; "
                         f"this config also changes {'; '.join(changes)}")
    if old_manifest["data"]["fingerprint"] != prepared.dataset.fingerprint:
        raise UsageError(f"{run.path}: the data changed since this run started (its "
                         "fingerprint differs); resuming would not continue the same run")
    ckpt = checkpoint.load(run.file(CHECKPOINT))
    if prepared.config.training.epochs < ckpt.state.epoch:
        raise UsageError(f"{run.path}: {ckpt.state.epoch} epochs are done already; "
                         f"training.epochs must be at least that, got "
                         f"{prepared.config.training.epochs}")
    if old_manifest["status"] == "finished" and \
            prepared.config.training.epochs == ckpt.state.epoch:
        raise UsageError(f"{run.path}: finished all {ckpt.state.epoch} epochs; to train longer "
                         f"pass --set training.epochs=N with N > {ckpt.state.epoch}")
    resumes = old_manifest.get("resumes", []) + [{"at": timestamp(), "command": argv}]
    return _Session(run, ckpt.state, ckpt, old_manifest["started"], old_manifest["command"],
                    resumes)


def _follow_chief(prepared: Prepared, session: _Session) -> _Session:
    """Multi-worker runs: every worker starts from the chief's state, its checkpoint when it
    resumes, sent over tf.distribute's collectives (every worker then restores it the same
    way, creating the optimizer's variables in step); so the other workers need neither the run
    directory nor a shared filesystem. A worker whose config or data differ from the chief's
    stops here with the differences, rather than training a different model in lockstep."""
    mine = {"config": resolved_config(prepared.loaded),
            "fingerprint": prepared.dataset.fingerprint}
    payload = b""
    if prepared.chief:
        head = json.dumps(mine).encode()
        ckpt = session.run.file(CHECKPOINT).read_bytes() if session.checkpoint else b""
        payload = len(head).to_bytes(8, "little") + head + ckpt
    data = distribute.from_chief(prepared.strategy, payload)
    if prepared.chief:
        return session
    size = int.from_bytes(data[:8], "little")
    chief = json.loads(data[8:8 + size])
    changes = [c for c in config_changes(chief["config"], mine["config"])
               if not c.startswith(_PER_WORKER)]
    if changes:
        raise UsageError(f"this worker's config differs from the chief's: {'; '.join(changes)}; "
                         "start every worker with the same config and --set options")
    if chief["fingerprint"] != mine["fingerprint"]:
        raise UsageError("this worker's data differ from the chief's (their fingerprints "
                         "differ); every worker must load the same rows")
    if len(data) == 8 + size:
        return session
    ckpt = checkpoint.parse(data[8 + size:], "the chief's checkpoint")
    return dataclasses.replace(session, state=ckpt.state, checkpoint=ckpt)


# Keys that may differ between the workers of one run: where each finds the data and writes.
_PER_WORKER = ("distribution.", "output.", "data.path:", "data.validation_path:",
               "data.test_path:", "data.x_path:", "data.y_path:", "data.validation.",
               "data.test.")


def train(loaded: LoadedConfig, *, argv: list[str] | None = None, force: bool = False,
          resume: Path | None = None, stop: StopRequest | None = None,
          on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          ) -> tuple[RunDir, TrainResult, Prepared]:
    """The whole pass: prepare, open the run directory, fit with checkpoints, write, move
    into place. A stopped, diverged or failed run that has a checkpoint is moved into place
    too, with its status in the manifest, so that it can be resumed."""
    # Started first, so that matplotlib loads on another core while TensorFlow does.
    with Painter.start(loaded.config.output.plots) as painter:
        prepared = prepare(loaded)
        if on_prepared is not None:
            on_prepared(prepared)
        kwargs = dict(argv=argv or sys.argv, force=force, resume=resume, stop=stop,
                      on_epoch=on_epoch, on_batch=on_batch, painter=painter)
        if prepared.chief:
            return _train(prepared, **kwargs)
        # The other workers make the same calls as the chief (saving and evaluating run
        # collectives), into a scratch directory that is deleted at the end. When the chief
        # resumes, they take its checkpoint from it (_follow_chief): they need no run
        # directory.
        scratch = tempfile.mkdtemp(prefix="nntrain-worker-")
        try:
            return _train(prepared, **{**kwargs, "resume": None}, root=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _train(prepared: Prepared, *, argv: list[str], force: bool, resume: Path | None,
           stop: StopRequest | None, on_epoch: EpochCallback | None,
           on_batch: BatchCallback | None, painter: Painter, root: str | None = None,
           ) -> tuple[RunDir, TrainResult, Prepared]:
    session = _resume(prepared, resume, argv) if resume else _start(prepared, argv, force, root)
    run = session.run
    stop = stop if stop is not None else StopRequest()
    elapsed = 0.0

    def status_writer(status: str, state: LoopState) -> Callable[[], None]:
        history = history_csv(state.rows)
        record = manifest(prepared, run, status, command=session.command,
                          started=session.started, seconds=elapsed, epochs=state.epoch,
                          resumes=session.resumes)

        def write() -> None:
            run.write_text(HISTORY, history)
            run.write_json(MANIFEST, record)
        return write

    def write_status(status: str, state: LoopState) -> None:
        status_writer(status, state)()

    # What the checkpoint on disk holds: a failure reports this, not the loop's newer state.
    saved = session.state
    # Checkpoints are written while the next epoch trains; everything below waits for the
    # last one (writes.close/settle) before it reports a status or moves the run.
    writes = BackgroundWriter()

    def save(state: LoopState, best: list[np.ndarray] | None,
             metrics: list[np.ndarray] | None) -> None:
        arrays = checkpoint.snapshot(prepared.model, state, best, metrics)
        state = copy.deepcopy(state)
        status = status_writer("running", state)

        def write() -> None:
            nonlocal saved
            checkpoint.write(run.file(CHECKPOINT), arrays)
            saved = state
            status()
        writes.submit(write)

    try:
        run.write_text(CONFIG, _config_text(prepared, run))
        write_status("running", session.state)
        compile_model(prepared)
        if distribute.is_multi_worker(prepared.strategy):
            session = _follow_chief(prepared, session)
            saved = session.state
        if session.checkpoint is not None:
            with prepared.scope():  # the optimizer's slots are created here when restoring
                checkpoint.restore(prepared.model, session.checkpoint)
        board = TensorBoardLog(run.file(TENSORBOARD), prepared.model, on_epoch) \
            if prepared.config.training.tensorboard else None
        result = run_loop(prepared.model, prepared.dataset, prepared.config.training,
                          state=session.state, checkpoint=session.checkpoint, save=save,
                          monitors=prepared.monitors, stop=stop, on_epoch=board or on_epoch,
                          on_batch=on_batch, one_fit=prepared.strategy is None)
        if board is not None:
            board.close()
        writes.close()
        elapsed = result.seconds
    except Interrupted:  # a second Ctrl-C: stop at once, keep the last checkpoint
        writes.settle()
        _keep_or_discard(run, lambda: write_status("interrupted", saved))
        raise
    except BaseException as exc:
        writes.settle()
        kept = run.file(CHECKPOINT).exists()
        _keep_or_discard(run, lambda: write_status("failed", saved))
        peer = distribute.lost_peer(exc, prepared.strategy)
        if peer is None:
            raise
        if not prepared.chief:
            resume = ("start every worker again, with --resume and the run directory the "
                      "chief names")
        elif kept:
            resume = (f"the run is saved in {run.path} after epoch {saved.epoch}; continue it by "
                      f"starting every worker again with --resume {run.path}")
        else:
            resume = "nothing was saved yet: start every worker again"
        raise NntrainError(f"{peer} stopped during training; {resume}") from exc
    if result.interrupted is not None:
        write_status("interrupted", result.state)
        run.commit()
        raise Interrupted(result.interrupted, f"interrupted after epoch {result.state.epoch} "
                          f"(step {result.state.step}); the run is saved in {run.path}; "
                          f"continue it with: nntrain train --resume {run.path}")
    if result.diverged is not None:
        epoch, quantity, value = result.diverged
        _keep_or_discard(run, lambda: write_status("diverged", result.state))
        raise TrainingDiverged(f"training diverged: {quantity} became {value} in epoch {epoch}",
                               hint="try a lower learning rate (training.optimizer."
                               "learning_rate), normalized inputs, or a smaller batch_size")
    history: dict[str, list[float]] = {}
    for row in result.state.rows:
        for k, v in row.items():
            history.setdefault(k, []).append(v)
    plots = prepared.config.output.plots
    try:
        if plots:  # drawn while the splits are evaluated and the model is saved
            painter.submit(plot_jobs(prepared, run.staging, history))
        metrics = evaluate_splits(prepared.model, prepared)
        outcome = TrainResult(history, metrics, result.state.epoch, result.seconds)
        run.write_json(METRICS, metrics)
        if prepared.dataset.labels:
            run.write_json(LABELS, prepared.dataset.labels)
        if prepared.dataset.preprocessing.recorded:
            run.write_json(PREPROCESSING, prepared.dataset.preprocessing.to_json(
                prepared.dataset.feature_names))
        run.save_model(prepared.model)
        if plots:
            painter.finish()
        write_status("finished", result.state)
        run.commit()
    except BaseException:
        painter.stop()  # before the staging directory moves or goes
        _keep_or_discard(run, lambda: write_status("failed", result.state))
        raise
    return run, outcome, prepared


def _keep_or_discard(run: RunDir, write_status: Callable[[], None]) -> None:
    """Keep a run that can be resumed (it has a checkpoint), with its status; drop the rest."""
    if not run.file(CHECKPOINT).exists():
        run.discard()
        return
    try:
        write_status()
        run.commit()
    except OSError:
        pass  # a full disk, say: the staging directory and its checkpoint stay for --resume


def _default_name(source_name: str) -> str:
    stem = Path(source_name).stem
    return stem if stem and not stem.startswith((".", "<", "-")) else "run"
