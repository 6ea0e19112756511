"""The Ray Tune driver of DLW training.

Trials are the grid ``source sets × seeds × searched hyper-parameters`` (``tune.grid_search``),
optionally pruned by ASHA, each with ``train.cpu``/``train.gpu`` resources. The experiment lives
in ``<repo>/runs/ray/<name>``, ``name = "dlw-" + hash(train params, seed, dataset hash, training
code, MLflow store)``. Rerunning the stage after an interruption restores it (``Tuner.restore``:
finished trials are kept, unfinished ones continue from their last checkpoint, errored ones
resume), while any change of params, data or code starts a new one, so a resume never continues
a stale experiment. Ray is local unless ``ray.address`` or ``$RAY_ADDRESS`` names a cluster
(:func:`pipeline.compute.ray_session`, which refuses ``train.cpu``/``train.gpu`` requests no node
can meet instead of waiting forever); MLflow logging is driver-side
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
from pipeline.schema import to_plain
from pipeline.train.params import SEARCHABLE, TrainParams

__all__ = [
    "TrainingError",
    "TrainingRun",
    "TrialOutcome",
    "experiment_name",
    "run_training",
]

log = logging.getLogger(__name__)

# The code whose changes alter trained weights: part of the experiment name, so an edited
# trainer never resumes an experiment started by the old one.
PACKAGE = Path(__file__).resolve().parents[1]
TRAINING_CODE = (
    "nets",
    "models",
    "degrade",
    "seeding.py",
    "train/bilevel.py",
    "train/data.py",
    "train/trainer.py",
    "train/trainable.py",
)


class TrainingError(RuntimeError):
    """Trials failed (their errors are in the message) or the run was interrupted."""


@dataclass
class TrialOutcome:
    """One finished trial: its config, metrics, the weights of its best epoch on val, and where
    it is recorded."""

    source_set: str
    seed_index: int
    config: dict[str, Any]
    trial_id: str
    metrics: dict[str, Any]
    state_dict: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int = 0  # 0: the last epoch (history[-1])
    mlflow_run_id: str | None = None

    @property
    def selected(self) -> dict[str, float]:
        """The history record of the epoch whose weights ``state_dict`` holds."""
        return self.history[self.best_epoch - 1] if self.best_epoch > 0 else self.history[-1]

    @property
    def hyper(self) -> dict[str, Any]:
        """The values of the searchable hyper-parameters this trial used."""
        return {k: self.config[k] for k in SEARCHABLE if k in self.config}


@dataclass
class TrainingRun:
    experiment: str
    path: Path
    resumed: bool
    dataset_hash: str
    tracking_uri: str
    mlflow_experiment_id: str
    outcomes: list[TrialOutcome] = field(default_factory=list)
    # The stage's tracking state (off after a warning when MLflow is unreachable).
    tracker: Any = None


def code_hash() -> str:
    h = hashlib.sha256()
    for entry in TRAINING_CODE:
        root = PACKAGE / entry
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            h.update(f.relative_to(PACKAGE).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def experiment_name(train: TrainParams, seed: int, dataset_hash: str, store: str = "") -> str:
    """``dlw-<12 hex>`` from the train params, the global seed, the data, the training code and
    the MLflow store (``store``): a restored experiment keeps logging where it started, so a
    different store must not resume it."""
    key = {
        "train": to_plain(train),
        "seed": seed,
        "data": dataset_hash,
        "code": code_hash(),
        "store": store,
    }
    return "dlw-" + json_sha256(key)[:12]


def param_space(train: TrainParams) -> dict[str, Any]:
    """The Tune config of every trial: grids over source sets, seeds and searched values; the
    other hyper-parameters as constants (so each MLflow run records all of them)."""
    from ray import tune

    space: dict[str, Any] = {
        "source_set": tune.grid_search(train.sets()),
        "seed_index": tune.grid_search(list(train.seeds)),
    }
    grid = train.search_grid()
    for name in SEARCHABLE:
        space[name] = tune.grid_search(grid[name]) if name in grid else getattr(train, name)
    space["augment"] = train.augment
    space["noise"] = train.noise.to_param()
    return space


def trial_dirname(trial) -> str:
    """Short, readable trial folders: ``nn+tv-seed0-<trial id>``."""
    c = trial.config
    return f"{c.get('source_set', 'trial')}-seed{c.get('seed_index', 0)}-{trial.trial_id}"


def run_training(
    params,
    root: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    storage: str | os.PathLike | None = None,
    callbacks: list | tuple = (),
) -> TrainingRun:
    """Fit (or resume) the experiment of ``params.train`` on ``<root>/data/clean``; returns every
    trial's outcome with its MLflow run id. Raises :class:`TrainingError` if a trial failed or
    the run was interrupted (rerun to resume). ``callbacks`` are extra Tune callbacks of a new
    experiment (a restored one keeps the callbacks it was started with)."""
    from ray import tune

    from pipeline.compute import check_device
    from pipeline.tracking import (
        Tracker,
        disable_telemetry,
        ensure_experiment,
        resolve_tracking_uri,
    )
    from pipeline.train.callback import DLWMlflowCallback, progress_callback
    from pipeline.train.data import dataset_hash
    from pipeline.train.trainable import train_dlw

    disable_telemetry()
    train: TrainParams = params.train
    root = Path(root).resolve()
    data_dir = Path(data_dir or root / "data" / "clean").resolve()
    storage = Path(storage or root / "runs" / "ray").resolve()
    dhash = dataset_hash(data_dir)
    if params.device == "cuda" and train.gpu <= 0:
        raise ValueError("device = cuda needs train.gpu > 0 (GPUs per trial)")
    check_device(params.device, cluster=bool(params.ray.address or os.environ.get("RAY_ADDRESS")))
    uri = resolve_tracking_uri(params.tracking.uri, root)
    name = experiment_name(train, params.seed, dhash, f"{uri}#{params.tracking.experiment}")
    tracker = Tracker(uri)
    mlflow_experiment = ""
    if tracker.check():
        mlflow_experiment = tracker.call(
            ensure_experiment, uri, params.tracking.experiment, root, default=""
        )
    context = {
        "seed": params.seed,
        "data_dir": str(data_dir),
        "val_models": list(train.source_models),
        "val_patches": train.val_patches,
        "val_patch_size": train.patch_size,
        "device": params.device,
        "threads": max(1, int(train.cpu)),
    }
    trainable = tune.with_resources(
        tune.with_parameters(train_dlw, context=context), {"cpu": train.cpu, "gpu": train.gpu}
    )
    path = storage / name
    needs = {"train.cpu": ("CPU", train.cpu), "train.gpu": ("GPU", train.gpu)}
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
                param_space=param_space(train),
                tune_config=_tune_config(train),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(storage),
                    failure_config=tune.FailureConfig(max_failures=train.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=train.keep_checkpoints),
                    callbacks=[
                        DLWMlflowCallback(
                            uri, params.tracking.experiment, name, dataset_hash=dhash
                        ),
                        progress_callback(),
                        *callbacks,
                    ],
                    verbose=0,
                ),
            )
        grid = tuner.fit()
    run = TrainingRun(name, path, resumed, dhash, uri, mlflow_experiment, tracker=tracker)
    run.outcomes = collect(grid, train, run)
    return run


def _tune_config(train: TrainParams):
    from ray import tune

    scheduler = None
    if train.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_t = max([train.epochs, *train.search_grid().get("epochs", [])])
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=train.scheduler.grace_period,
            reduction_factor=train.scheduler.reduction_factor,
        )
    return tune.TuneConfig(
        metric="val_mpsnr",
        mode="max",
        scheduler=scheduler,
        # Trials hold equal resources: a finished trial's worker, torch already imported,
        # runs the next one (≈ 3 s of CPU saved per trial on the CPU default).
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )


def collect(grid, train: TrainParams, run: TrainingRun) -> list[TrialOutcome]:
    """Every trial's final checkpoint and metrics; failures and unfinished trials raise."""
    from pipeline.tracking import find_runs
    from pipeline.train.checkpoint import load_checkpoint
    from pipeline.train.trainable import CHECKPOINT_FILE

    failed, unfinished, outcomes = [], [], []
    for result in grid:
        config = result.config or {}
        label = (
            f"{config['source_set']}/seed-{config['seed_index']}"
            if "source_set" in config
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
        if train.scheduler.name != "asha" and epochs_done < int(config["epochs"]):
            unfinished.append(f"{label} ({epochs_done}/{config['epochs']} epochs)")
            continue
        # The best epoch on val (pipeline.train.trainer): the net the trial hands on.
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
                source_set=config["source_set"],
                seed_index=int(config["seed_index"]),
                config=dict(config),
                trial_id=trial_id,
                metrics=dict(result.metrics),
                state_dict=best["state_dict"],
                history=list(state["history"]),
                best_epoch=int(best["epoch"]),
                mlflow_run_id=runs[0].info.run_id if runs else None,
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
    return sorted(outcomes, key=lambda o: (o.source_set, o.seed_index, str(o.hyper)))


def _first_line(error: BaseException) -> str:
    # Tune wraps trial errors (RayTaskError); the original message is the useful part.
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln and ":" in ln:
            return ln.strip()
    return lines[-1].strip() if lines else type(error).__name__
