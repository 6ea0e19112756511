"""What a train stage writes for its method (disjoint outs, each written atomically).

- ``models/<method>/<variant>/seed-<k>.pt``: the trained weights of every seed (evaluation uses
  them all; the epoch of each trial that was best on val), with ``seed-<k>.json`` beside it
  (params, validation metrics, MLflow run id, Ray trial id, dataset hash); ``best.pt`` /
  ``best.json``: the seed with the highest ``val_score``. With a hyper-parameter search, the
  configuration with the best mean ``val_score`` over seeds is kept; the others stay in Ray's
  folder and MLflow.
- ``reports/train/<method>/metrics.json``: validation metrics per variant (DVC metrics), plus
  what the method adds (:meth:`pipeline.methods.base.Method.summary`).
- ``reports/train/<method>/curves/<variant>.csv``: per-epoch curves, mean over seeds (DVC plots).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import atomic_dir, canonical_json, write_bytes, write_json
from pipeline.methods.base import SCORE
from pipeline.train.runner import TrainingRun, TrialOutcome

__all__ = ["choose", "log_figures", "write_outputs"]

# Curve columns first in this order (when present), then the other numeric ones sorted.
CURVE_FRONT = ("epoch", "step", "lr", "lr_retries", "train_loss", SCORE)
# Ray's and the runner's bookkeeping: not curves.
NOT_CURVES = {"restored_from_epoch", "epoch_cpu_s", "trial_cpu_s"}


def choose(outcomes: list[TrialOutcome]) -> dict[str, list[TrialOutcome]]:
    """Per variant, the seeds of the hyper-parameter configuration with the best mean
    ``val_score`` over seeds."""
    by_variant: dict[str, dict[str, list[TrialOutcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        by_variant[o.variant][canonical_json(o.hyper)].append(o)
    chosen = {}
    for name, configs in sorted(by_variant.items()):
        best = max(configs.values(), key=lambda seeds: np.mean([_score(o) for o in seeds]))
        chosen[name] = sorted(best, key=lambda o: o.seed_index)
    return chosen


def _score(o: TrialOutcome) -> float:
    return float(o.selected[SCORE])


def _final(o: TrialOutcome) -> dict[str, float]:
    """The validation metrics of the epoch whose weights are written (the best on val)."""
    return {k: float(v) for k, v in o.selected.items() if k.startswith("val_")}


def seed_record(o: TrialOutcome, run: TrainingRun, params, best_of: int) -> dict[str, Any]:
    return {
        "method": run.method.name,
        "variant": o.variant,
        "seed_index": o.seed_index,
        "seed": params.seed,
        "file": f"seed-{o.seed_index}.pt",
        **run.method.part_record(o.config),
        "params": o.config,
        "configs_searched": best_of,
        "epochs_trained": int(o.history[-1]["epoch"]),
        "selected_epoch": int(o.selected["epoch"]),  # the best on val: its weights are saved
        "validation": _final(o),
        "dataset_hash": run.dataset_hash,
        "mlflow_run_id": o.mlflow_run_id,
        "mlflow_experiment": params.tracking.experiment,
        "ray_trial_id": o.trial_id,
        "ray_experiment": run.experiment,
    }


def write_outputs(
    run: TrainingRun, params, root: str | Path, context: dict[str, Any]
) -> dict[str, Any]:
    """Write ``models/<method>`` and ``reports/train/<method>/{metrics.json,curves}``; returns
    the metrics written. ``context``: what the method's summary needs (seed, data_dir)."""
    from pipeline.checkpoint import save_checkpoint

    root = Path(root)
    name = run.method.name
    chosen = choose(run.outcomes)
    configs = defaultdict(set)
    for o in run.outcomes:
        configs[o.variant].add(canonical_json(o.hyper))
    per_variant: dict[str, Any] = {}
    with atomic_dir(root / "models" / name) as tmp:
        for variant, seeds in chosen.items():
            folder = tmp / variant
            for o in seeds:
                save_checkpoint(folder / f"seed-{o.seed_index}.pt", o.state_dict)
                write_json(
                    folder / f"seed-{o.seed_index}.json",
                    seed_record(o, run, params, len(configs[variant])),
                )
            best = max(seeds, key=_score)
            shutil.copyfile(folder / f"seed-{best.seed_index}.pt", folder / "best.pt")
            record = seed_record(best, run, params, len(configs[variant]))
            record["chosen_from_seeds"] = [o.seed_index for o in seeds]
            write_json(folder / "best.json", record)
            finals = [_final(o) for o in seeds]
            per_variant[variant] = {
                k: round(float(np.mean([f[k] for f in finals])), 4) for k in sorted(finals[0])
            }
            per_variant[variant]["best_seed"] = best.seed_index
    reports = root / "reports" / "train" / name
    with atomic_dir(reports / "curves") as tmp:
        for variant, seeds in chosen.items():
            write_bytes(tmp / f"{variant}.csv", curves_csv(seeds).encode("utf-8"))
    metrics = {
        "method": name,
        "experiment": run.experiment,
        "dataset_hash": run.dataset_hash,
        "trials": len(run.outcomes),
        **run.method.summary(run.outcomes, context),
        "variants": per_variant,
    }
    write_json(reports / "metrics.json", metrics)
    return metrics


def curves_csv(seeds: list[TrialOutcome]) -> str:
    """Per-epoch means over seeds of the logged quantities, one row per epoch."""
    import pandas as pd

    frames = [pd.DataFrame(o.history) for o in seeds]
    df = pd.concat(frames).groupby("epoch", as_index=False).mean(numeric_only=True)
    df = df.drop(columns=[c for c in df if c in NOT_CURVES])
    front = [c for c in CURVE_FRONT if c in df]
    cols = front + sorted(c for c in df if c not in front)
    df["epoch"] = df["epoch"].astype(int)
    if "step" in df:
        df["step"] = df["step"].astype(int)
    return df[cols].to_csv(index=False, float_format="%.6g")


def log_figures(run: TrainingRun, context: dict[str, Any]) -> int:
    """Log the method's picture of each trial's trained part to its MLflow run, from the driver
    (the store's single writer); returns how many were logged (none once tracking is off:
    MLflow unreachable or failing, or the method draws none)."""
    from pipeline.tracking import Tracker, log_artifact

    tracker = run.tracker or Tracker(run.tracking_uri)
    if not tracker.enabled or not any(o.mlflow_run_id for o in run.outcomes):
        return 0
    logged = 0
    with tempfile.TemporaryDirectory(prefix="figures-") as folder:
        for o in run.outcomes:
            if o.mlflow_run_id is None:
                continue
            path = Path(folder) / o.trial_id / f"{run.method.name}.png"
            title = f"{o.variant}, seed {o.seed_index}"
            if not run.method.figure(o.state_dict, context, path, title):
                return logged
            tracker.call(log_artifact, run.tracking_uri, o.mlflow_run_id, path)
            if not tracker.enabled:
                break
            logged += 1
    return logged
