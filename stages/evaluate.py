"""DVC stage ``evaluate``: the transfer matrix on Ray, logged to MLflow.

Reads params ``seed``, ``device``, ``tracking``, ``ray`` and ``evaluate``, the degraded
``val``/``test`` sets (``data/degraded``, ``data/clean``) and the trained parts of the learned
methods (``models/<method>/``). Writes
``reports/results.parquet`` (test cells), ``reports/tuning.parquet`` (the val strength grid),
``reports/gallery.parquet`` and ``reports/evaluate.json`` (a summary for ``dvc metrics show``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from pathlib import Path

from stages._common import run, start

log = logging.getLogger("evaluate")


def dataset_hash(manifest_path: Path) -> str:
    """Hash of the degraded val/test arrays (their recorded content hashes, in order)."""
    import pandas as pd

    df = pd.read_parquet(manifest_path, columns=["split", "case", "image_id", "sha256"])
    df = df.sort_values(["split", "case", "image_id"])
    return hashlib.sha256("\n".join(df.sha256).encode()).hexdigest()


def main() -> None:
    params = start("evaluate")
    from pipeline.tracking import disable_telemetry, resolve_tracking_uri

    disable_telemetry()
    from pipeline.compute import ray_session
    from pipeline.evaluate.results import (
        gallery_table,
        git_commit,
        package_versions,
        params_hash,
        results_table,
        run_config,
        run_key,
        tuning_table,
    )
    from pipeline.evaluate.summary import summary
    from pipeline.evaluate.transfer import check_restorers, run_transfer
    from pipeline.io import write_json, write_parquet

    p = params.evaluate
    root = Path.cwd()
    check_restorers(p)
    uri = resolve_tracking_uri(params.tracking.uri, root)
    section = {"seed": params.seed, "evaluate": params.to_dict()["evaluate"]}
    if params.device != "cpu":  # where learned maps are computed (cpu: the default, not hashed)
        section["device"] = params.device
    provenance = {
        "git_commit": git_commit(root),
        "params_hash": params_hash(section),
        "dataset_hash": dataset_hash(root / "data" / "degraded" / "manifest.parquet"),
    }
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Ray starts only when a cell must be solved: a rerun that reads every cell from the
        # cache needs none (≈ 5 s saved).
        def start_ray() -> None:
            if not started:
                needs = {"evaluate.cpu": ("CPU", p.cpu)}
                stack.enter_context(ray_session(params.ray.address, params.ray.num_cpus, needs))
                started.append(True)

        started: list[bool] = []
        result = run_transfer(root, p, resolve_device(params.device), start_ray)
    solve_s = time.perf_counter() - t0
    # Every out is written before MLflow is called: an unreachable or failing tracking server
    # costs the run ids, never the solved cells.
    config = run_config(section, provenance, package_versions())
    results = results_table(result, provenance, {})
    write_parquet(root / "reports" / "tuning.parquet", tuning_table(result), config)
    write_parquet(root / "reports" / "gallery.parquet", gallery_table(result), config)
    write_parquet(root / "reports" / "results.parquet", results, config)
    stats = summary(results)
    write_json(root / "reports" / "evaluate.json", stats)
    run_ids = track(uri, params.tracking.experiment, root, result, provenance)
    if run_ids:
        results["mlflow_run_id"] = [run_ids.get(run_key(r), "") for _, r in results.iterrows()]
        write_parquet(root / "reports" / "results.parquet", results, config)
    log.info(
        "%d test cells, %d val solves in %.0f s (%d not converged, %d strengths on the grid edge)",
        len(results),
        len(result["tuning"]),
        solve_s,
        int((~results.converged).sum()),
        int(results.strength_on_edge.sum()),
    )
    for line in stats_lines(results):
        log.info("%s", line)


def resolve_device(device: str) -> str:
    """``auto`` → cuda when torch sees one, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def track(uri: str, experiment: str, root: Path, result: dict, provenance: dict) -> dict:
    """Log the MLflow runs; returns ``{(weighting, seed, restorer, seed): run_id}`` of those
    logged (none when the server is unreachable; those before an error otherwise), after one
    warning."""
    from pipeline.evaluate.runs import log_runs
    from pipeline.tracking import Tracker

    tracker = Tracker(uri)
    ids: dict = {}
    if tracker.check():
        tracker.call(log_runs, uri, experiment, root, result, provenance, ids=ids)
    return ids


def stats_lines(results) -> list[str]:
    """MPSNR per weighting (rows) × restorer (columns), mean over the cases and test images of
    each task (one table per task: a restorer's mean over tasks would mix different problems)."""
    lines = []
    tasks = results.get("task")
    for task in [None] if tasks is None else list(dict.fromkeys(tasks)):
        part = results if task is None else results[tasks == task]
        table = part.pivot_table(
            index="weighting", columns="restorer", values="mpsnr", aggfunc="mean"
        )
        widths = [max(8, len(str(c)) + 1) for c in table.columns]
        title = "MPSNR (dB)" if task is None else f"{task}, MPSNR (dB)"
        lines.append(
            f"{title:<22}"
            + "".join(f"{c:>{w}}" for c, w in zip(table.columns, widths, strict=True))
        )
        for name, row in table.iterrows():
            cells = "".join(
                f"{'-':>{w}}" if v != v else f"{v:{w}.2f}" for v, w in zip(row, widths, strict=True)
            )
            lines.append(f"{name:<22}{cells}")
    return lines


if __name__ == "__main__":
    run("evaluate", main)
