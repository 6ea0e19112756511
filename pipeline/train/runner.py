"""The one Ray Tune runner of every learned method (docs/architecture.md).

Trials are the grid ``variants × seeds × searched hyper-parameters`` of a method
(:class:`pipeline.methods.base.Method`; ``tune.grid_search``), optionally pruned by ASHA on
``val_score``, each with the ``cpu``/``gpu`` resources of the method's section. The experiment
lives in ``<repo>/runs/ray/<name>``, ``name = "<method>-" + hash(the method's params, seed,
dataset hash, training code, MLflow store)``. Rerunning the stage after an interruption restores
it (``Tuner.restore``:
finished trials are kept, unfinished ones continue from their last checkpoint, errored ones
resume), while any change of params, data or code starts a new one, so a resume never continues
a stale experiment. Ray is local unless ``ray.address`` or ``$RAY_ADDRESS`` names a cluster
(:func:`pipeline.compute.ray_session`, which refuses ``cpu``/``gpu`` requests no node can meet
instead of waiting forever); MLflow logging is driver-side
(:mod:`pipeline.train.callback`) and optional: an unreachable server is one warning, and the
trials, checkpoints and outputs do not depend on it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.compute import ray_session
from pipeline.io import json_sha256
from pipeline.methods.base import SCORE, Method
from pipeline.schema import to_plain

__all__ = [
    "TrainingError",
    "TrainingRun",
    "TrialOutcome",
    "experiment_name",
    "run_training",
]

log = logging.getLogger(__name__)

# The code whose changes alter trained weights: part of the experiment name, so an edited
# trainer never resumes an experiment started by the old one. Besides these, the method's own
# package and what it lists in ``Method.code``.
PACKAGE = Path(__file__).resolve().parents[1]
TRAINING_CODE = ("methods/base.py", "methods/params.py", "train/data.py", "train/trainable.py")


class TrainingError(RuntimeError):
    """Trials failed (their errors are in the message) or the run was interrupted."""


@dataclass
class TrialOutcome:
    """One finished trial: its config, metrics, the weights of its best epoch on val, and where
    it is recorded."""

    variant: str
    seed_index: int
    config: dict[str, Any]
    trial_id: str
    metrics: dict[str, Any]
    state_dict: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int = 0  # 0: the last epoch (history[-1])
    mlflow_run_id: str | None = None
    searchable: tuple[str, ...] = ()  # the method's searchable hyper-parameters

    @property
    def selected(self) -> dict[str, float]:
        """The history record of the epoch whose weights ``state_dict`` holds."""
        return self.history[self.best_epoch - 1] if self.best_epoch > 0 else self.history[-1]

    @property
    def hyper(self) -> dict[str, Any]:
        """The values of the searchable hyper-parameters this trial used."""
        return {k: self.config[k] for k in self.searchable if k in self.config}


@dataclass
class TrainingRun:
    method: Method
    experiment: str
    path: Path
    resumed: bool
    dataset_hash: str
    tracking_uri: str
    mlflow_experiment_id: str
    outcomes: list[TrialOutcome] = field(default_factory=list)
    # The stage's tracking state (off after a warning when MLflow is unreachable).
    tracker: Any = None


def code_hash(method: type[Method]) -> str:
    import inspect

    own = Path(inspect.getfile(method)).resolve()
    # A package's folder (methods/<name>/), or a one-file method's file.
    own = own.parent if own.name == "__init__.py" else own
    entries = [*TRAINING_CODE, *method.code]
    h = hashlib.sha256()
    for f in sorted(own.rglob("*.py")) if own.is_dir() else [own]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    for entry in entries:
        root = PACKAGE / entry
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            h.update(f.relative_to(PACKAGE).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def experiment_name(method: Method, seed: int, dataset_hash: str, store: str = "") -> str:
    """``<method>-<12 hex>`` from the method's params, the global seed, the data, the training
    code and the MLflow store (``store``): a restored experiment keeps logging where it started,
    so a different store must not resume it."""
    key = {
        "method": method.name,
        "params": to_plain(method.params),
        "seed": seed,
        "data": dataset_hash,
        "code": code_hash(type(method)),
        "store": store,
    }
    return f"{method.name}-" + json_sha256(key)[:12]


def param_space(method: Method) -> dict[str, Any]:
    """The Tune config of every trial: grids over variants, seeds and searched values; the other
    hyper-parameters and the method's constants as values (so each MLflow run records all)."""
    from ray import tune

    p = method.params
    space: dict[str, Any] = {
        "variant": tune.grid_search(method.variants()),
        "seed_index": tune.grid_search(list(p.seeds)),
    }
    grid = p.search_grid()
    for name, value in p.constants().items():
        space[name] = tune.grid_search(grid[name]) if name in grid else value
    space.update(method.trial_config())
    return space


def trial_dirname(trial) -> str:
    """Short, readable trial folders: ``nn+tv-seed0-<trial id>``."""
    c = trial.config
    return f"{c.get('variant', 'trial')}-seed{c.get('seed_index', 0)}-{trial.trial_id}"


def run_training(
    method: Method,
    params,
    root: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    storage: str | os.PathLike | None = None,
    callbacks: list | tuple = (),
) -> TrainingRun:
    """Fit (or resume) the experiment of ``method`` (its params section parsed) on
    ``<root>/data/clean``, with the shared sections of ``params`` (seed, device, tracking, ray);
    returns every trial's outcome with its MLflow run id. Raises :class:`TrainingError` if a trial
    failed or the run was interrupted (rerun to resume). ``callbacks`` are extra Tune callbacks of
    a new experiment (a restored one keeps the callbacks it was started with)."""
    from ray import tune

    from pipeline.compute import check_device
    from pipeline.tracking import (
        Tracker,
        disable_telemetry,
        ensure_experiment,
        resolve_tracking_uri,
    )
    from pipeline.train.callback import MlflowCallback, progress_callback
    from pipeline.train.data import dataset_hash
    from pipeline.train.trainable import train_trial

    disable_telemetry()
    p = method.params
    where = f"train.{method.name}"
    root = Path(root).resolve()
    data_dir = Path(data_dir or root / "data" / "clean").resolve()
    storage = Path(storage or root / "runs" / "ray").resolve()
    dhash = dataset_hash(data_dir)
    if params.device == "cuda" and p.gpu <= 0:
        raise ValueError(f"device = cuda needs {where}.gpu > 0 (GPUs per trial)")
    check_device(params.device, cluster=bool(params.ray.address or os.environ.get("RAY_ADDRESS")))
    uri = resolve_tracking_uri(params.tracking.uri, root)
    name = experiment_name(method, params.seed, dhash, f"{uri}#{params.tracking.experiment}")
    tracker = Tracker(uri)
    mlflow_experiment = ""
    if tracker.check():
        mlflow_experiment = tracker.call(
            ensure_experiment, uri, params.tracking.experiment, root, default=""
        )
    context = {
        "method": type(method),  # pickled by reference: the worker imports its module
        "params": to_plain(p),
        "seed": params.seed,
        "data_dir": str(data_dir),
        "device": params.device,
        "threads": max(1, int(p.cpu)),
    }
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, context=context), {"cpu": p.cpu, "gpu": p.gpu}
    )
    path = storage / name
    needs = {f"{where}.cpu": ("CPU", p.cpu), f"{where}.gpu": ("GPU", p.gpu)}
    with ray_session(params.ray.address, params.ray.num_cpus, needs):
        resumed = tune.Tuner.can_restore(str(path))
        if resumed:
            log.info("resuming experiment %s (%s)", name, path)
            tuner = tune.Tuner.restore(
                str(path), trainable, resume_errored=True, restart_errored=False
            )
        else:
            log.info("starting experiment %s (%s)", name, path)
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(method),
                tune_config=_tune_config(p),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(storage),
                    failure_config=tune.FailureConfig(max_failures=p.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=p.keep_checkpoints),
                    callbacks=[
                        MlflowCallback(
                            uri,
                            params.tracking.experiment,
                            name,
                            dataset_hash=dhash,
                            method=method.name,
                        ),
                        progress_callback(method),
                        *callbacks,
                    ],
                    verbose=0,
                ),
            )
        grid = tuner.fit()
    run = TrainingRun(method, name, path, resumed, dhash, uri, mlflow_experiment, tracker=tracker)
    run.outcomes = collect(grid, run)
    return run


def _tune_config(p):
    from ray import tune

    scheduler = None
    if p.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = max([p.epochs, *p.search_grid().get("epochs", [])])
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=p.scheduler.grace_period,
            reduction_factor=p.scheduler.reduction_factor,
        )
    return tune.TuneConfig(
        metric=SCORE,
        mode="max",
        scheduler=scheduler,
        # Trials hold equal resources: a finished trial's worker, torch already imported,
        # runs the next one (≈ 3 s of CPU saved per trial on the CPU default).
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )


def collect(grid, run: TrainingRun) -> list[TrialOutcome]:
    """Every trial's final checkpoint and metrics; failures and unfinished trials raise."""
    from pipeline.checkpoint import load_checkpoint
    from pipeline.tracking import find_runs
    from pipeline.train.trainable import CHECKPOINT_FILE

    p = run.method.params
    failed, unfinished, outcomes = [], [], []
    for result in grid:
        config = result.config or {}
        label = (
            f"{config['variant']}/seed-{config['seed_index']}"
            if "variant" in config
            else Path(result.path).name
        )
        if result.error is not None:
            failed.append(f"{label}: {_first_line(result.error)}")
            continue
        if result.checkpoint is None:
            unfinished.append(label)
            continue
        with result.checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
        epochs_done = int(state["epoch"])
        # ASHA stops trials early on purpose; otherwise every trial must run all its epochs.
        if p.scheduler.name != "asha" and epochs_done < int(config["epochs"]):
            unfinished.append(f"{label} ({epochs_done}/{config['epochs']} epochs)")
            continue
        # The best epoch on val (pipeline.methods.base): the part the trial hands on.
        best = state.get("best") or state
        trial_id = str(result.metrics.get("trial_id", ""))
        runs = []
        if run.tracker is not None and run.mlflow_experiment_id:
            runs = run.tracker.call(
                find_runs,
                run.tracking_uri,
                run.mlflow_experiment_id,
                {"ray_experiment": run.experiment, "ray_trial_id": trial_id},
                default=[],
            )
        outcomes.append(
            TrialOutcome(
                variant=config["variant"],
                seed_index=int(config["seed_index"]),
                config=dict(config),
                trial_id=trial_id,
                metrics=dict(result.metrics),
                state_dict=best["state_dict"],
                history=list(state["history"]),
                best_epoch=int(best["epoch"]),
                mlflow_run_id=runs[0].info.run_id if runs else None,
                searchable=tuple(p.SEARCHABLE),
            )
        )
    if failed:
        raise TrainingError(
            f"{len(failed)} trial(s) of experiment {run.experiment} failed:\n  "
            + "\n  ".join(failed)
        )
    if unfinished:
        raise TrainingError(
            f"experiment {run.experiment} was interrupted ({', '.join(unfinished)} unfinished); "
            "rerun the stage to resume it"
        )
    return sorted(outcomes, key=lambda o: (o.variant, o.seed_index, str(o.hyper)))


def _first_line(error: BaseException) -> str:
    # Tune wraps trial errors (RayTaskError); the original message is the useful part.
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln and ":" in ln:
            return ln.strip()
    return lines[-1].strip() if lines else type(error).__name__
