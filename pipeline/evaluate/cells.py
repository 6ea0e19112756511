"""One cell of the transfer matrix: a target solved to convergence on one noisy image with one
weight map (or a peer baseline), scored against the clean image.

:func:`run_group` is what a Ray task runs: a list of :class:`Job` over a shared payload (the
images and the weight maps, put in Ray's object store once). It pins torch's threads to the
CPUs the task holds, so solve times compare (``docs/architecture.md``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Job", "run_group", "run_job", "weight_key"]

BASELINE_METHODS = ("bm4d", "bm3d")


@dataclass(frozen=True)
class Job:
    phase: str  # "tune" (val) or "test"
    method: str  # "dlw" (a weighted target), "tv_l1", "bm4d" or "bm3d"
    target: str  # the model solved (the baseline's name for bm4d / bm3d)
    weighting: str  # "unweighted", "oracle", "handcrafted", "dlw:<set>", "none"
    seed: int  # training seed of a dlw weighting, else -1
    multiplier: float  # × the target's reference strengths (NaN for bm4d / bm3d)
    item: str  # "<split>/<case>/<image_id>"
    band: int = -1  # ≥ 0: also return this band of the restoration (the gallery)


def weight_key(weighting: str, seed: int, item: str) -> str:
    return f"{weighting}|{seed}|{item}"


def run_job(
    job: Job,
    item: dict[str, np.ndarray],
    w: np.ndarray | None,
    overrides: dict,
    precision: str = "float64",
) -> dict:
    """Solve one cell; the record holds the job, the metrics and the solver's diagnostics."""
    import torch

    from pipeline.evaluate.metrics import all_metrics, mpsnr

    start = time.perf_counter()
    if job.method in BASELINE_METHODS:
        from pipeline.evaluate.baselines import denoise_baseline

        x = denoise_baseline(job.method, item["noisy"], float(np.mean(item["sigma"])))
        diag = {"iterations": 0, "primal_residual": math.nan, "dual_residual": math.nan}
        diag["converged"] = True
    else:
        from pipeline.models import build_model
        from pipeline.models.strength import scaled_params

        base = overrides.get(job.target, {})
        params = {**base, **scaled_params(job.target, job.multiplier, base)}
        model = build_model(job.target, **params)
        model.converge_dtype = getattr(torch, precision)
        y = torch.from_numpy(item["noisy"])[None]
        wt = None if w is None else torch.from_numpy(w)[None]
        with torch.no_grad():
            sol = model.solve(y, wt, converge=True)
        x = sol.x[0].numpy()
        diag = {
            "iterations": int(sol.iterations),
            "primal_residual": float(sol.primal_residual[0]),
            "dual_residual": float(sol.dual_residual[0]),
            "converged": bool(sol.converged[0]),
        }
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(f"{job.target} on {job.item} ({job.weighting}): non-finite output")
    clean = item["clean"]
    # Tuning only needs the selection metric; the test cells get all of them.
    scores = {"mpsnr": mpsnr(clean, x)} if job.phase == "tune" else all_metrics(clean, x)
    record: dict[str, Any] = {**asdict(job), **scores, **diag, "time_s": seconds}
    if job.band >= 0:
        record["x_band"] = np.ascontiguousarray(x[job.band], dtype=np.float32)
    return record


def run_group(
    jobs: list[Job], payload: dict, overrides: dict, threads: int, precision: str = "float64"
) -> list[dict]:
    """A Ray task: the jobs in order, torch pinned to ``threads`` threads."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    items, weights = payload["items"], payload["weights"]
    out = []
    for job in jobs:
        w = weights.get(weight_key(job.weighting, job.seed, job.item))
        out.append(run_job(job, items[job.item], w, overrides, precision))
    return out
