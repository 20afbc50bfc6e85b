"""The orchestration of a run, from a validated config to a run directory in place: prepare
it (prepare.py), open its run directory (new, resumed, or a worker's scratch one), fit with
checkpoints (loop.py), write the record (runs/record.py) and move it into place; k-fold runs
go through folds.py. No config parsing (a resume only compares the run's own config.yaml)
and no printing: progress goes to the callbacks the caller passes in."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nntrain import backend
from nntrain.config import LoadedConfig
from nntrain.data import tabular
from nntrain.data.baseline import BASELINE, training_rows
from nntrain.data.dataset import evaluation_batch
from nntrain.data.preprocess import PREPROCESSING
from nntrain.errors import Interrupted, NntrainError, TrainingDiverged, UsageError
from nntrain.plots import Painter, plot_jobs
from nntrain.runs.guard import environment_error
from nntrain.runs.record import config_changes, config_text, history_csv, manifest, resolved_config
from nntrain.runs.rundir import (CONFIG, HISTORY, LABELS, MANIFEST, METRICS, BackgroundWriter,
                                 RunDir, read_json, timestamp)
from nntrain.training import checkpoint, distribute
from nntrain.training.checkpoint import CHECKPOINT, Checkpoint, LoopState
from nntrain.training.early_stopping import early_stopping_record
from nntrain.training.folds import check_folds, train_folds
from nntrain.training.loop import BatchCallback, EpochCallback, StopRequest, loss_first, run_loop
from nntrain.training.prepare import Prepared, compile_model, prepare
from nntrain.training.tensorboard_log import TENSORBOARD, TensorBoardLog


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    metrics: dict[str, dict[str, float]]
    epochs_run: int
    seconds: float
    early_stopping: dict[str, Any] | None = None  # see early_stopping.early_stopping_record
    # k-fold runs (data.split.folds): metrics are the folds' means; see folds.py
    folds: list[dict[str, Any]] | None = None
    std: dict[str, dict[str, float]] | None = None
    model_fold: int | None = None


def evaluate_splits(model: Any, prepared: Prepared) -> dict[str, dict[str, float]]:
    ds = prepared.dataset
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "validation", "test"):
        x = ds.split(split)[0]
        if len(x):
            batch = evaluation_batch(x, prepared.config.training.batch_size)
            res = model.evaluate(**ds.inputs(split, batch), verbose=0, return_dict=True)
            out[split] = loss_first({k: float(v) for k, v in res.items()})
    return out


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
    prepared.notes += run.notes
    return _Session(run, LoopState(), None, timestamp(), argv, [])


def _resume(prepared: Prepared, run_dir: Path, argv: list[str]) -> _Session:
    """Open an earlier run and check that this config may continue it."""
    run = RunDir.open(run_dir)
    run.take()
    try:
        return _check_resume(prepared, run, argv)
    except BaseException:
        run.release()
        raise


def _check_resume(prepared: Prepared, run: RunDir, argv: list[str]) -> _Session:
    old_manifest = read_json(run.file(MANIFEST))
    old = yaml.safe_load(run.file(CONFIG).read_text())
    new = resolved_config(prepared.loaded)
    changes = [c for c in config_changes(old, new)
               if not c.startswith(("training.epochs:", "output.", "distribution.",
                                    "training.backend: None ->"))]  # runs before backend
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
    directory nor a shared filesystem. The workers agreed on the config before TensorFlow
    started (distribute.find_peers); one whose data differ from the chief's stops here, rather
    than training a different model in lockstep."""
    mine = {"fingerprint": prepared.dataset.fingerprint}
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
    if chief["fingerprint"] != mine["fingerprint"]:
        raise UsageError("this worker's data differ from the chief's (their fingerprints "
                         "differ); every worker must load the same rows")
    if len(data) == 8 + size:
        return session
    ckpt = checkpoint.parse(data[8 + size:], "the chief's checkpoint")
    return dataclasses.replace(session, state=ckpt.state, checkpoint=ckpt)


def train(loaded: LoadedConfig, *, argv: list[str] | None = None, force: bool = False,
          resume: Path | None = None, stop: StopRequest | None = None,
          on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
          on_prepared: Callable[[Prepared], None] | None = None,
          ) -> tuple[RunDir, TrainResult, Prepared]:
    """The whole pass: prepare, open the run directory, fit with checkpoints, write, move
    into place. A stopped, diverged or failed run that has a checkpoint is moved into place
    too, with its status in the manifest, so that it can be resumed."""
    if resume is not None and loaded.config.training.backend is None:
        loaded = _on_recorded_backend(loaded, resume)
    # Started first, so that matplotlib loads on another core while TensorFlow does.
    with Painter.start(loaded.config.output.plots) as painter:
        prepared = prepare(loaded)
        folds = getattr(prepared.config.data.split, "folds", None)
        if folds:
            check_folds(prepared, resume)
        kwargs = dict(argv=argv or sys.argv, force=force, resume=resume, stop=stop,
                      on_epoch=on_epoch, on_batch=on_batch, painter=painter)
        if folds:
            if on_prepared is not None:
                on_prepared(prepared)
            return train_folds(prepared, train_one=_train,
                               name=loaded.config.output.name
                               or _default_name(loaded.source.name),
                               **{k: v for k, v in kwargs.items() if k != "resume"})
        kwargs["on_prepared"] = on_prepared  # told once the run name is checked (_train)
        if prepared.chief:
            return _train(prepared, **kwargs)
        # The other workers make the same calls as the chief (saving and evaluating run
        # collectives), into a scratch directory that is deleted at the end. When the chief
        # resumes, they take its checkpoint from it (_follow_chief): they need no run
        # directory.
        scratch = _scratch_directory()
        try:
            return _train(prepared, **{**kwargs, "resume": None}, root=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# The other workers' scratch directories, in the system's temporary directory: named with
# their process ID, so that one a SIGKILL left behind goes when the next worker starts.
_SCRATCH = "nntrain-worker-"


def _scratch_directory() -> str:
    for old in Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*-*"):
        pid = old.name[len(_SCRATCH):].partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-")


def _running(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there; keep its directory
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a system that cannot tell: keep its directory
        pass
    return True


def _on_recorded_backend(loaded: LoadedConfig, resume: Path) -> LoadedConfig:
    """A resumed run continues on the backend it trained on when the config names none: the
    one its config.yaml records, or TensorFlow for a run from before nntrain recorded it
    (TensorFlow was the only backend then, and the default until JAX)."""
    try:
        recorded = yaml.safe_load(RunDir.open(resume).file(CONFIG).read_text()) or {}
    except (OSError, UsageError):  # no run there: _resume says so (the other workers of a
        return loaded              # multi-worker run need none)
    name = (recorded.get("training") or {}).get("backend") or "tensorflow"
    training = loaded.config.training.model_copy(update={"backend": name})
    return dataclasses.replace(loaded, config=loaded.config.model_copy(
        update={"training": training}))


def _train(prepared: Prepared, *, argv: list[str], force: bool, resume: Path | None,
           stop: StopRequest | None, on_epoch: EpochCallback | None,
           on_batch: BatchCallback | None, painter: Painter, root: str | None = None,
           on_prepared: Callable[[Prepared], None] | None = None,
           ) -> tuple[RunDir, TrainResult, Prepared]:
    session = _resume(prepared, resume, argv) if resume else _start(prepared, argv, force, root)
    try:
        # Told only now, so that a refused run name or resume is the only thing printed.
        if on_prepared is not None:
            on_prepared(prepared)
        with prepared.running():
            return _train_run(prepared, session, stop=stop, on_epoch=on_epoch,
                              on_batch=on_batch, painter=painter)
    finally:
        session.run.release()


def _train_run(prepared: Prepared, session: _Session, *, stop: StopRequest | None,
               on_epoch: EpochCallback | None, on_batch: BatchCallback | None,
               painter: Painter) -> tuple[RunDir, TrainResult, Prepared]:
    run = session.run
    stop = stop if stop is not None else StopRequest()
    elapsed = 0.0

    def status_writer(status: str, state: LoopState) -> Callable[[], None]:
        history = history_csv(state.rows)
        record = manifest(prepared.loaded, prepared.dataset, prepared.targets.task, run, status,
                          command=session.command, started=session.started, seconds=elapsed,
                          epochs=state.epoch, resumes=session.resumes,
                          distribution=prepared.distribution) | prepared.learned()

        def write() -> None:
            run.write_text(HISTORY, history)
            run.write_json(MANIFEST, record)
        return write

    def write_status(status: str, state: LoopState) -> None:
        status_writer(status, state)()

    # What the checkpoint on disk holds: a failure reports this, not the loop's newer state.
    saved = session.state
    # Checkpoints are written while the next epoch trains. When the writer is still busy with
    # one, the next epoch's replaces any that waits its turn (short epochs outrun the fsyncs),
    # so the checkpoint on disk may be an epoch or a few behind while training; everything
    # below waits for the last one (writes.close/settle) before it reports a status or moves
    # the run.
    writes = BackgroundWriter()

    def save(state: LoopState, best: list[np.ndarray] | None,
             metrics: list[np.ndarray] | None) -> None:
        # Only the copies happen here, between two epochs; serializing the checkpoint, the
        # history and the manifest happens on the writer's thread with the files.
        state = checkpoint.copy_state(state)
        arrays = checkpoint.snapshot(prepared.model, best, metrics)

        def write() -> None:
            nonlocal saved
            checkpoint.write(run.file(CHECKPOINT), arrays, state)
            saved = state
            status_writer("running", state)()
        writes.submit(write)

    try:
        run.write_text(CONFIG, config_text(prepared.loaded, run))
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
                          on_batch=on_batch, one_fit=prepared.strategy is None
                          or distribute.is_jax_distribution(prepared.strategy),
                          class_weight=prepared.class_weight)
        if board is not None:
            board.close()
        writes.close()
        elapsed = result.seconds
    except Interrupted as exc:  # a second Ctrl-C: stop at once, keep the last checkpoint
        writes.settle()
        kept = _keep_or_discard(run, lambda: write_status("interrupted", saved), "interrupted",
                                saved)
        raise Interrupted(exc.exit_code - 128, f"interrupted; {kept}") from None
    except BaseException as exc:
        writes.settle()
        kept = run.file(CHECKPOINT).exists()
        what = _keep_or_discard(run, lambda: write_status("failed", saved), "failed", saved)
        if isinstance(exc, OSError) and (error := environment_error(exc, what)) is not None:
            raise error from exc
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
        if not run.file(CHECKPOINT).exists():  # stopped before the first step
            run.discard()
            raise Interrupted(result.interrupted, "interrupted before training began; nothing "
                              "was kept; start it again")
        try:
            write_status("interrupted", result.state)
            run.commit("interrupted")
        except OSError as exc:
            raise environment_error(exc, _kept(run, saved)) or exc from exc
        raise Interrupted(result.interrupted, f"interrupted after epoch {result.state.epoch} "
                          f"(step {result.state.step}); the run is saved in {run.path}; "
                          f"continue it with: nntrain train --resume {run.path}")
    if result.diverged is not None:
        epoch, quantity, value = result.diverged
        kept = _keep_or_discard(run, lambda: write_status("diverged", result.state), "diverged",
                                result.state)
        raise TrainingDiverged(f"training diverged: {quantity} became {value} in epoch {epoch}",
                               hint="try a lower learning rate (training.optimizer."
                               "learning_rate), normalized inputs, or a smaller batch_size"
                               + (f"; {kept}" if run.kept_beside else ""))
    history: dict[str, list[float]] = {}
    for row in result.state.rows:
        for k, v in row.items():
            history.setdefault(k, []).append(v)
    plots = prepared.config.output.plots
    try:
        if plots:  # drawn while the splits are evaluated and the model is saved
            painter.submit(plot_jobs(prepared.model, prepared.dataset, prepared.targets,
                                      run.staging, history))
        metrics = evaluate_splits(prepared.model, prepared)
        stopping = early_stopping_record(prepared.config.training,
                                         prepared.monitors.get("early_stopping"), result.state)
        outcome = TrainResult(history, metrics, result.state.epoch, result.seconds, stopping)
        run.write_json(METRICS, {**metrics, **({"early_stopping": stopping} if stopping else {})})
        if prepared.targets.labels:
            run.write_json(LABELS, prepared.targets.to_json())
        if prepared.targets.is_classifier:
            from nntrain.training.per_class import PER_CLASS, per_class_csv  # eval's numbers

            run.write_text(PER_CLASS, per_class_csv(prepared))
        if prepared.dataset.preprocessing.recorded:
            run.write_json(PREPROCESSING, prepared.dataset.preprocessing.to_json(
                prepared.dataset.feature_names))
        rows = training_rows(prepared.dataset, prepared.targets.task)
        if rows is not None:  # the baseline of `nntrain explain`
            run.write_json(BASELINE, rows.to_json())
        if prepared.dataset.table is not None:
            # Saved with the lookups in front, so that it takes raw rows in plain Keras (the
            # lookups are TensorFlow's, on any backend).
            run.write_json(tabular.COLUMNS, prepared.dataset.table.to_json())
            run.save_model(tabular.raw_model(prepared.dataset.table, prepared.model))
        else:
            with backend.tensorflow_unneeded():
                run.save_model(prepared.model)
        if plots:
            painter.finish()
        write_status("finished", result.state)
        run.commit()
    except Interrupted as exc:  # a second Ctrl-C during the final evaluation or save
        painter.stop()
        kept = _keep_or_discard(run, lambda: write_status("interrupted", result.state),
                                "interrupted", result.state)
        raise Interrupted(exc.exit_code - 128, f"interrupted; {kept}") from None
    except BaseException as exc:
        painter.stop()  # before the staging directory moves or goes
        what = _keep_or_discard(run, lambda: write_status("failed", result.state), "failed",
                                result.state)
        if isinstance(exc, OSError) and (error := environment_error(exc, what)) is not None:
            raise error from exc
        raise
    return run, outcome, prepared


def _keep_or_discard(run: RunDir, write_status: Callable[[], None], status: str,
                     state: LoopState) -> str:
    """Keep a run that can be resumed (it has a checkpoint), with its status; drop the rest.
    Returns what was kept and how to go on, for the error message."""
    if not run.file(CHECKPOINT).exists():
        run.discard()
        return "nothing was kept (no epoch had finished); start it again"
    try:
        write_status()
        run.commit(status)
    except OSError:
        pass  # a full disk, say: the staging directory and its checkpoint stay for --resume
    return _kept(run, state)


def _kept(run: RunDir, state: LoopState) -> str:
    where = run.staging
    # A run left staged beside an old run of its name (--force) is resumed by its staging name.
    resume = run.staging if run.staging != run.path and run.path.exists() else run.path
    return (f"the run is kept in {where} with its checkpoint after epoch {state.epoch}; "
            f"continue it with: nntrain train --resume {resume}")


def _default_name(source_name: str) -> str:
    stem = Path(source_name).stem
    return stem if stem and not stem.startswith((".", "<", "-")) else "run"
