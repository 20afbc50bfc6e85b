"""Run a sweep's trials on Optuna: one worker process pulls trials from the study until it
holds the requested number of finished or pruned ones.

Each trial is a normal run directory, trained in this process by the same ``train`` the CLI
calls (no TensorFlow start-up per trial), with the graph freed between trials. The study lives
in an Optuna storage, by default a SQLite file in the sweep directory; several workers, on one
machine or many, share it. Nothing here prints: progress goes to the ``on_trial`` callback.

How a trial ends, in the study and on disk:

- finished: COMPLETE, the value of the sweep's metric in the run's metrics.json;
- pruned: PRUNED, at the epoch the pruner stopped it; its run is finished and whole (model,
  metrics), trained for fewer epochs;
- failed (a config Keras refuses, divergence): FAIL, with the one-line reason in the trial's
  user attribute ``error``; the sweep goes on;
- stopped (Ctrl-C) or lost (its worker was killed): FAIL, and the same parameters are queued
  again; the retry continues the trial's run from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nntrain.errors import ConfigError, Interrupted, NntrainError, UsageError, format_path
from nntrain.training.loop import StopRequest
from nntrain.sweep.spec import Sweep, grid_points

STUDY_DB = "study.db"
SWEEP_JSON = "sweep.json"  # where the study is: storage URL and study name, for `show`
# Heartbeats for shared storage: a RUNNING trial whose worker has not been heard from for
# GRACE seconds is failed and queued again by the next worker that asks for a trial. A dead
# worker on this machine is noticed at once (its process id is gone).
HEARTBEAT = 10
GRACE = 60
SURPLUS = "surplus"
STORAGE_ENV = "NNTRAIN_SWEEP_STORAGE"  # --storage, from the environment  # user attribute of a trial asked for after the sweep was full


@dataclass
class TrialOutcome:
    number: int
    state: str  # finished, pruned, failed, surplus
    params: dict[str, Any]
    value: float | None
    epochs: int
    seconds: float
    run: str | None
    error: str | None = None
    retry_of: int | None = None


def storage_url(sweep: Sweep, url: str | None) -> str:
    return url or f"sqlite:///{sweep.directory / STUDY_DB}"


def open_storage(url: str) -> Any:
    import optuna

    if url.startswith("journal:"):  # a journal file on a shared filesystem
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1 reaches PostgreSQL through psycopg 3 by default; the postgresql extra
        # installs psycopg2 (prebuilt wheels everywhere), so use it when it is the one there.
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
            url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:"):
        # Workers on one SQLite file wait for each other's writes instead of failing at once.
        kwargs = {"connect_args": {"timeout": 60}}
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                heartbeat_stale_trial_callback=_retry_callback())
    except (ImportError, ValueError, ArgumentError) as exc:  # no driver, or not a URL
        raise UsageError(f"--storage {_safe(url)}: {str(exc).splitlines()[0]}") from None
    except SQLAlchemyError as exc:
        raise UsageError(f"--storage {_safe(url)}: cannot open it: "
                         f"{str(exc).splitlines()[0]}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}@{tail}"


def _retry_callback() -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(
            inherit_intermediate_values=True)


def open_study(sweep: Sweep, url: str | None, *, force: bool = False) -> Any:
    """Create the sweep's study, or load it to continue; refuse a changed search space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Each trial builds a new model, so TensorFlow's "retracing" warning is expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Trials are asked for and told here (to stop at exactly the requested number) and the
    # heartbeat is ours (_heartbeat), which Optuna cannot see.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    sweep.directory.mkdir(parents=True, exist_ok=True)
    url = storage_url(sweep, url)
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=sweep.name,
                                direction=sweep.direction, sampler=_sampler(sweep),
                                pruner=_pruner(sweep), load_if_exists=True)
    mine = sweep.space_json()
    stored = study.user_attrs.get("sweep")
    if stored is None or force:
        study.set_user_attr("sweep", mine)
    elif stored != mine:
        changes = _changes(stored, mine)
        raise UsageError(f"{sweep.source.name}: the sweep changed since it started "
                         f"({'; '.join(changes)}); continuing would mix two searches in one "
                         "study. Pass --force to continue anyway, or give it another directory "
                         "(--dir)")
    from nntrain.runs.rundir import atomic_write_text

    atomic_write_text(sweep.directory / SWEEP_JSON, json.dumps(
        {"storage": _safe(url) if url != storage_url(sweep, None) else STUDY_DB,
         "study": sweep.name, "sweep_file": str(Path(sweep.source.name).resolve()),
         "trials": sweep.spec.trials, "metric": sweep.spec.metric,
         "direction": sweep.direction}, indent=2) + "\n")
    return study


def _changes(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            out += _changes(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if old == new else [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]


def _sampler(sweep: Sweep) -> Any:
    import optuna

    seed = sweep.spec.seed
    if sweep.spec.sampler == "grid":
        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args: Any) -> None:
                """Optuna's would call study.stop(), which only works inside study.optimize;
                the sweep stops by itself at its number of trials."""

        # Trial N takes the N-th point of the grid shuffled by the seed: every worker must
        # shuffle it the same way, or two of them would run one point and skip another.
        return Grid(grid_points(sweep.dimensions), seed=seed)
    make = optuna.samplers.RandomSampler if sweep.spec.sampler == "random" else \
        optuna.samplers.TPESampler
    return _seeded_by_trial(make, seed)


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a sweep seeded ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _seeded_by_trial(make: Callable[..., Any], seed: int) -> Any:
    """A sampler that draws each trial with a fresh ``make(seed=trial_seed(seed, number))``.

    One seeded sampler per worker would make every worker propose the same first trials, and
    workers on different machines are numbered alike; trial numbers are unique in the study.
    So no two trials share a random stream, whichever worker runs them, and the draws of trial
    N do not depend on how many workers there are or on a restart in between. TPE still reads
    the trials the study holds when it proposes one, so with several workers the order in which
    trials finish can change what it proposes."""
    import optuna

    class PerTrial(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = make(seed=seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner = make(seed=trial_seed(seed, trial.number))
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
            return self.inner.sample_relative(study, trial, space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self.inner.sample_independent(study, trial, name, dist)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return PerTrial()


def _pruner(sweep: Sweep) -> Any:
    import optuna

    p = sweep.pruner
    if p is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials,
                                       n_warmup_steps=p.warmup_epochs)


def distributions(sweep: Sweep) -> dict[str, Any]:
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    out: dict[str, Any] = {}
    for d in sweep.dimensions:
        if d.kind == "choice":
            out[d.key] = CategoricalDistribution(list(d.values))
        elif d.kind == "int":
            out[d.key] = IntDistribution(d.values[0], d.values[1])
        else:
            out[d.key] = FloatDistribution(d.values[0], d.values[1],
                                           log=d.kind == "log_uniform")
    return out


# --- the worker loop -----------------------------------------------------------------------

def counted(trial: Any) -> bool:
    """A trial that counts towards the sweep's number: finished or pruned."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and \
        not trial.user_attrs.get(SURPLUS)


def work(sweep: Sweep, study: Any, *, stop: StopRequest,
         on_trial: Callable[[TrialOutcome], None] | None = None) -> int:
    """Run trials until the study holds sweep.spec.trials finished or pruned ones (or the
    others running elsewhere will make it so). Returns how many trials this worker ran."""
    from optuna.trial import TrialState

    ran = 0
    failures = 0
    wanted = sweep.spec.trials
    while not stop:
        _fail_lost(study)
        trials = study.get_trials(deepcopy=False)
        done = sum(counted(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if done >= wanted or (done + running >= wanted and not waiting):
            break
        trial = study.ask(distributions(sweep))
        with _heartbeat(study, trial):
            if _is_surplus(study, trial, wanted):
                study.tell(trial, state=TrialState.FAIL)
                break
            outcome = run_trial(sweep, study, trial, stop)
        ran += 1
        if on_trial is not None:
            on_trial(outcome)
        failures = failures + 1 if outcome.state == "failed" else 0
        if failures >= max(3, wanted // 2):
            raise NntrainError(f"{failures} trials in a row failed; the last one: "
                               f"{outcome.error}", hint="check the search space and the base "
                               "config; `nntrain sweep SWEEP_DIR` lists every "
                               "trial's reason")
    return ran


def _is_surplus(study: Any, trial: Any, wanted: int) -> bool:
    """Two workers that both saw room for one more trial: the later one stands down, so the
    sweep ends with exactly the requested number."""
    from optuna.trial import TrialState

    ahead = [t for t in study.get_trials(deepcopy=False)
             if t.number < trial.number and not t.user_attrs.get(SURPLUS)
             and (counted(t) or t.state in (TrialState.RUNNING, TrialState.WAITING))]
    if len(ahead) < wanted:
        return False
    trial.set_user_attr(SURPLUS, True)
    return True


def _fail_lost(study: Any) -> None:
    """Fail and queue again the RUNNING trials whose worker is gone: at once when it ran on
    this machine (its process is gone), else when its heartbeat is older than GRACE."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where = t.user_attrs.get("where", {})
        pid = where.get("pid")
        if where.get("host") != host or not isinstance(pid, int) or pid == os.getpid() \
                or _alive(pid):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        _retry_callback()(study, study._storage.get_trial(t._trial_id))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Tell shared storage that this trial's worker is alive, every HEARTBEAT seconds."""
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        yield
        return
    done = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if done.wait(HEARTBEAT):
                return

    thread = threading.Thread(target=beat, name="nntrain-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_trial(sweep: Sweep, study: Any, trial: Any, stop: StopRequest) -> TrialOutcome:
    """Train one trial's config into its run directory and tell the study how it ended."""
    import optuna
    from optuna.trial import TrialState

    from nntrain.config import validate_source
    from nntrain.errors import TrainingDiverged
    from nntrain.tf import import_keras
    from nntrain.training.train import train

    params = dict(trial.params)
    retry_of = study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
    # A retry keeps the run name of the trial it retries (the attributes are copied over).
    name = trial.user_attrs.get("where", {}).get("run") or f"trial-{trial.number:04d}"
    # Each set_user_attr is a transaction of the storage: one for where the trial runs, one
    # for how it ended (a SQLite commit is tens of milliseconds on a busy disk).
    trial.set_user_attr("where", {"host": socket.gethostname(), "pid": os.getpid(),
                                  "run": name})
    run_path = sweep.directory / name
    outcome = TrialOutcome(trial.number, "failed", params, None, 0, 0.0, str(run_path),
                           retry_of=retry_of)
    split, metric = sweep.split_metric
    pruned_at: list[int] = []
    stop.finishing = False

    def on_epoch(epoch: int, total: int, logs: dict[str, float], seconds: float) -> None:
        value = logs.get(sweep.epoch_key)
        if value is None or sweep.pruner is None:
            return
        trial.report(value, epoch)
        # After the last epoch there is nothing left to save: the trial simply finishes.
        if epoch < total and trial.should_prune():
            pruned_at.append(epoch)
            stop.finish()

    overrides = [f"output.dir={json.dumps(str(sweep.directory))}",
                 f"output.name={json.dumps(name)}", "output.plots=false",
                 *sweep.overrides(params)]
    try:
        try:
            loaded = validate_source(sweep.base.source, overrides)
            resume = _resumable(run_path)
            if resume is not None and _finished(resume):
                result = _read_result(resume)
            else:
                _, result, _ = train(loaded, argv=["nntrain", "sweep", sweep.source.name],
                                     force=True, resume=resume, stop=stop, on_epoch=on_epoch)
        finally:
            # Free the graph for the next trial. Without Keras's gc.collect(), which takes
            # seconds with TensorFlow loaded; Python's collector gets to the cycles anyway.
            import_keras().backend.clear_session(free_memory=False)
    except Interrupted as exc:
        # Queued again with the same parameters; the retry continues this run.
        study.tell(trial, state=TrialState.FAIL)
        _retry_callback()(study, study._storage.get_trial(trial._trial_id))
        saved = "its run is saved" if _resumable(run_path) else "nothing of it was saved yet"
        raise Interrupted(exc.exit_code - 128, f"sweep stopped during trial {trial.number} "
                          f"({saved}); run the same command again to continue "
                          "it") from exc
    except (ConfigError, TrainingDiverged, NntrainError) as exc:
        outcome.error = _one_line(exc)
        trial.set_user_attr("ended", {"error": outcome.error})
        study.tell(trial, state=TrialState.FAIL)
        return outcome
    except BaseException as exc:
        trial.set_user_attr("ended", {"error": f"internal error: {type(exc).__name__}: {exc}"})
        study.tell(trial, state=TrialState.FAIL)
        raise
    value = result.metrics.get(split, {}).get(metric)
    outcome.epochs, outcome.seconds = result.epochs_run, result.seconds
    ended: dict[str, Any] = {"epochs": result.epochs_run, "seconds": round(result.seconds, 3)}
    if value is None:
        outcome.error = f"the run logged no {sweep.spec.metric}"
        trial.set_user_attr("ended", {**ended, "error": outcome.error})
        study.tell(trial, state=TrialState.FAIL)
        return outcome
    outcome.value = float(value)
    if pruned_at:
        trial.set_user_attr("ended", {**ended, "value": outcome.value,
                                      "pruned_at": pruned_at[0]})
        study.tell(trial, state=TrialState.PRUNED)
        outcome.state = "pruned"
    else:
        trial.set_user_attr("ended", ended)
        study.tell(trial, outcome.value)
        outcome.state = "finished"
    return outcome


def _one_line(exc: NntrainError) -> str:
    p = exc.problems[0]
    where = format_path(p.path)
    return f"{where}: {p.message}" if where else p.message


def _resumable(run_path: Path) -> Path | None:
    """The run of an earlier attempt at this trial, if it saved a checkpoint."""
    from nntrain.runs.rundir import MANIFEST
    from nntrain.training.checkpoint import CHECKPOINT

    staging = run_path.with_name(f".{run_path.name}.partial")
    for path in (run_path, staging):
        if (path / MANIFEST).is_file() and (path / CHECKPOINT).is_file():
            return path
    return None


def _finished(run_path: Path) -> bool:
    from nntrain.runs.rundir import MANIFEST, METRICS, read_json

    return (run_path / METRICS).is_file() and \
        read_json(run_path / MANIFEST).get("status") == "finished"


@dataclass
class _Done:
    metrics: dict[str, dict[str, float]]
    epochs_run: int
    seconds: float


def _read_result(run_path: Path) -> _Done:
    """A trial whose run finished before its worker could tell the study."""
    from nntrain.runs.rundir import MANIFEST, METRICS, read_json

    manifest = read_json(run_path / MANIFEST)
    return _Done(read_json(run_path / METRICS), int(manifest.get("epochs_completed", 0)),
                 float(manifest.get("seconds", 0.0)))


# --- more workers on this machine ----------------------------------------------------------

def start_workers(sweep: Sweep, sweep_file: str, url: str | None, count: int) -> list[Any]:
    """Start ``count`` more worker processes on the same study (``nntrain sweep --worker N``);
    they print their progress lines on this process's standard error. The storage URL goes
    in the environment, not on a command line that `ps` shows to everyone."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "nntrain", "sweep", str(Path(sweep_file).resolve()),
               "--dir", str(sweep.directory)]
    env = {**os.environ, STORAGE_ENV: storage_url(sweep, url)}
    return [subprocess.Popen([*command, "--worker", str(i)], stdout=subprocess.DEVNULL,
                             env=env) for i in range(1, count + 1)]


def wait_workers(workers: list[Any]) -> list[int]:
    """Wait for every worker; return their exit codes."""
    return [w.wait() for w in workers]
