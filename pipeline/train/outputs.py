"""What the train stage writes (disjoint outs, each written atomically).

- ``models/dlw/<source set>/seed-<k>.pt``: the DLWnet state dict of every seed (evaluation uses
  them all), with ``seed-<k>.json`` beside it (params, validation metrics, MLflow run id, Ray
  trial id, dataset hash); ``best.pt``/``best.json``: the seed with the highest validation MPSNR
  (mean over the set's source models). With a hyper-parameter search, the configuration with the
  best mean over seeds is kept; the others stay in Ray's folder and MLflow.
- ``reports/train_metrics.json``: validation MPSNR per source set × source model (DVC metrics).
- ``reports/train_curves/<source set>.csv``: per-epoch curves, mean over seeds (DVC plots).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import atomic_dir, canonical_json, write_bytes, write_json
from pipeline.train.driver import TrainingRun, TrialOutcome

__all__ = ["choose", "log_weight_maps", "unweighted_scores", "write_outputs"]

CURVE_COLUMNS = ("epoch", "step", "lr", "lr_retries", "train_loss", "val_mpsnr", "val_weight_ratio")


def choose(outcomes: list[TrialOutcome]) -> dict[str, list[TrialOutcome]]:
    """Per source set, the seeds of the hyper-parameter configuration with the best mean
    validation MPSNR over seeds."""
    by_set: dict[str, dict[str, list[TrialOutcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        by_set[o.source_set][canonical_json(o.hyper)].append(o)
    chosen = {}
    for name, configs in sorted(by_set.items()):
        best = max(configs.values(), key=lambda seeds: np.mean([_val(o) for o in seeds]))
        chosen[name] = sorted(best, key=lambda o: o.seed_index)
    return chosen


def _val(o: TrialOutcome) -> float:
    return float(o.selected["val_mpsnr"])


def _final(o: TrialOutcome) -> dict[str, float]:
    """The validation metrics of the epoch whose weights are written (the best on val)."""
    return {k: float(v) for k, v in o.selected.items() if k.startswith("val_")}


def seed_record(o: TrialOutcome, run: TrainingRun, params, best_of: int) -> dict[str, Any]:
    return {
        "source_set": o.source_set,
        "source_models": o.source_set.split("+"),
        "seed_index": o.seed_index,
        "seed": params.seed,
        "file": f"seed-{o.seed_index}.pt",
        "net": {"name": "dlwnet", "width": int(o.config["width"]), "depth": int(o.config["depth"])},
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
    run: TrainingRun,
    params,
    root: str | Path,
    unweighted: dict[str, float],
) -> dict[str, Any]:
    """Write ``models/dlw``, ``reports/train_metrics.json`` and ``reports/train_curves``;
    returns the metrics written."""
    from pipeline.train.checkpoint import save_checkpoint

    root = Path(root)
    chosen = choose(run.outcomes)
    configs = defaultdict(set)
    for o in run.outcomes:
        configs[o.source_set].add(canonical_json(o.hyper))
    per_set: dict[str, Any] = {}
    with atomic_dir(root / "models" / "dlw") as tmp:
        for name, seeds in chosen.items():
            folder = tmp / name
            for o in seeds:
                save_checkpoint(folder / f"seed-{o.seed_index}.pt", o.state_dict)
                write_json(
                    folder / f"seed-{o.seed_index}.json",
                    seed_record(o, run, params, len(configs[name])),
                )
            best = max(seeds, key=_val)
            shutil.copyfile(folder / f"seed-{best.seed_index}.pt", folder / "best.pt")
            record = seed_record(best, run, params, len(configs[name]))
            record["chosen_from_seeds"] = [o.seed_index for o in seeds]
            write_json(folder / "best.json", record)
            finals = [_final(o) for o in seeds]
            per_set[name] = {
                k: round(float(np.mean([f[k] for f in finals])), 4) for k in sorted(finals[0])
            }
            per_set[name]["best_seed"] = best.seed_index
    with atomic_dir(root / "reports" / "train_curves") as tmp:
        for name, seeds in chosen.items():
            write_bytes(tmp / f"{name}.csv", curves_csv(seeds).encode("utf-8"))
    metrics = {
        "experiment": run.experiment,
        "dataset_hash": run.dataset_hash,
        "trials": len(run.outcomes),
        "unweighted": {f"val_mpsnr_{m}": round(v, 4) for m, v in unweighted.items()},
        "source_sets": per_set,
    }
    write_json(root / "reports" / "train_metrics.json", metrics)
    return metrics


def curves_csv(seeds: list[TrialOutcome]) -> str:
    """Per-epoch means over seeds of the logged quantities, one row per epoch."""
    import pandas as pd

    frames = [pd.DataFrame(o.history) for o in seeds]
    df = pd.concat(frames).groupby("epoch", as_index=False).mean(numeric_only=True)
    cols = [c for c in CURVE_COLUMNS if c in df] + sorted(
        c for c in df if c.startswith("val_mpsnr_")
    )
    df["epoch"] = df["epoch"].astype(int)
    if "step" in df:
        df["step"] = df["step"].astype(int)
    return df[cols].to_csv(index=False, float_format="%.6g")


def _validation(params, data_dir: Path):
    from pipeline.train.data import load_tiles, validation_set

    return validation_set(
        load_tiles(data_dir, "val"),
        seed=params.seed,
        patches=params.train.val_patches,
        patch_size=params.train.patch_size,
        noise=params.train.noise,
    )


def unweighted_scores(params, data_dir: str | Path) -> dict[str, float]:
    """MPSNR of each source model with w = 1 on the validation set: the reference a learned
    weight map must beat."""
    import torch

    from pipeline.models.registry import build_model
    from pipeline.train.bilevel import score

    val = _validation(params, Path(data_dir))
    models = {m: build_model(m) for m in params.train.source_models}
    return score(models, torch.from_numpy(val.noisy), torch.from_numpy(val.clean))


def log_weight_maps(run: TrainingRun, params, data_dir: str | Path) -> int:
    """Log the picture of each trial's predicted weight map (first validation patch) to its
    MLflow run, from the driver (the store's single writer); returns how many were logged (none
    once tracking is off: MLflow unreachable or failing)."""
    import torch

    from pipeline.nets.dlwnet import DLWNet
    from pipeline.tracking import Tracker, log_artifact
    from pipeline.train.figure import weight_map_png

    tracker = run.tracker or Tracker(run.tracking_uri)
    if not tracker.enabled or not any(o.mlflow_run_id for o in run.outcomes):
        return 0
    val = _validation(params, Path(data_dir))
    noisy = torch.from_numpy(val.noisy[:1])
    logged = 0
    with tempfile.TemporaryDirectory(prefix="dlw-maps-") as folder:
        for o in run.outcomes:
            if o.mlflow_run_id is None:
                continue
            with torch.no_grad():
                w = DLWNet.from_state_dict(o.state_dict).eval()(noisy)[0].numpy()
            path = Path(folder) / o.trial_id / "weight_map.png"
            weight_map_png(
                path,
                val.noisy[0],
                w,
                val.mask[0],
                f"DLW weights, source set {o.source_set}, seed {o.seed_index}",
            )
            tracker.call(log_artifact, run.tracking_uri, o.mlflow_run_id, path)
            if not tracker.enabled:
                break
            logged += 1
    return logged
