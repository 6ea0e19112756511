"""One cell of the transfer matrix: a restorer run on one noisy image with one weight map (or
none), scored against the clean image.

:func:`run_group` is what a Ray task runs: a list of :class:`Job` over a shared payload (the
images, the weight maps and the restorers, put in Ray's object store once). It pins torch's
threads to the CPUs the task holds, so solve times compare (``docs/architecture.md``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Job", "run_group", "run_job", "split_item", "weight_key"]

NO_WEIGHTING = "none"  # the weighting label of a restorer that takes none


@dataclass(frozen=True)
class Job:
    phase: str  # "tune" (val) or "test"
    restorer: str  # the restorer's label ("tv", "bm4d", "<method>:<variant>")
    restorer_seed: int  # training seed of a learned restorer, else -1
    weighting: str  # "unweighted", "oracle", "handcrafted", "<method>:<variant>", "none"
    weighting_seed: int  # training seed of a learned weighting, else -1
    multiplier: float  # × the restorer's reference strengths (NaN when it has none to tune)
    item: str  # "<split>/<case>/<image_id>"
    band: int = -1  # ≥ 0: also return this band of the restoration (the gallery)


def split_item(item: str) -> tuple[str, str, str]:
    """``(split, case, image_id)`` of an item key; a task's case label has a '/' of its own
    (``test/blur-g1.6/noniid/img``)."""
    split, rest = item.split("/", 1)
    case, image_id = rest.rsplit("/", 1)
    return split, case, image_id


def weight_key(weighting: str, seed: int, item: str) -> str:
    return f"{weighting}|{seed}|{item}"


def run_job(
    job: Job,
    item: dict[str, np.ndarray],
    w: np.ndarray | None,
    restorer,
    precision: str = "float64",
    root: Path | None = None,
    parts: dict | None = None,
) -> dict:
    """Solve one cell; the record holds the job, the metrics and the solver's diagnostics."""
    start = time.perf_counter()
    x, diag = restorer.restore(item, w, job.multiplier, precision, root, parts)
    return score(job, item, x, diag, time.perf_counter() - start)


def score(job: Job, item: dict[str, np.ndarray], x: np.ndarray, diag: dict, seconds: float):
    """The record of a solved cell: the job, its metrics, the diagnostics and the time."""
    from pipeline.evaluate.metrics import all_metrics, mpsnr

    if not np.all(np.isfinite(x)):
        where = f"{job.restorer} on {job.item} ({job.weighting})"
        raise FloatingPointError(f"{where}: non-finite output")
    clean = item["clean"]
    if x.shape != clean.shape:
        raise ValueError(f"{job.restorer} returned shape {x.shape} for {clean.shape}")
    # Tuning only needs the selection metric; the test cells get all of them.
    scores = {"mpsnr": mpsnr(clean, x)} if job.phase == "tune" else all_metrics(clean, x)
    record: dict[str, Any] = {**asdict(job), **scores, **diag, "time_s": seconds}
    if job.band >= 0:
        record["x_band"] = np.ascontiguousarray(x[job.band], dtype=np.float32)
    return record


def run_group(
    jobs: list[Job], payload: dict, threads: int, precision: str = "float64", batch: int = 1
) -> list[dict]:
    """A Ray task: the jobs in order, torch pinned to ``threads`` threads. With ``batch`` > 1,
    runs of consecutive jobs that share a model restorer, a strength, an image shape and
    whether they have a map are solved as one batch of at most ``batch`` samples (each sample
    stops on its own; the time of a batch is shared equally by its cells)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    items, weights, restorers = payload["items"], payload["weights"], payload["restorers"]
    root, parts = payload.get("root"), {}

    def w_of(job: Job):
        return weights.get(weight_key(job.weighting, job.weighting_seed, job.item))

    def kind(job: Job) -> tuple:
        r = restorers[(job.restorer, job.restorer_seed)]
        if r.kind != "model" or items[job.item].get("A") is not None:
            return (id(job),)  # solved alone (an operator is per image)
        return (job.restorer, job.multiplier, items[job.item]["noisy"].shape, w_of(job) is None)

    runs: list[list[Job]] = []
    for job in jobs:
        if runs and len(runs[-1]) < batch and kind(runs[-1][0]) == kind(job):
            runs[-1].append(job)
        else:
            runs.append([job])
    out = []
    for run in runs:
        restorer = restorers[(run[0].restorer, run[0].restorer_seed)]
        if len(run) == 1:
            job = run[0]
            out.append(run_job(job, items[job.item], w_of(job), restorer, precision, root, parts))
            continue
        start = time.perf_counter()
        solved = restorer.restore_batch(
            [items[j.item] for j in run], [w_of(j) for j in run], run[0].multiplier, precision
        )
        seconds = (time.perf_counter() - start) / len(run)
        for job, (x, diag) in zip(run, solved, strict=True):
            out.append(score(job, items[job.item], x, diag, seconds))
    return out
