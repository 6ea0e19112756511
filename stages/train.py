"""DVC stage ``train``: DLW bilevel training with Ray Tune, tracked in MLflow.

Reads params ``seed``, ``device``, ``tracking``, ``ray`` and ``train``, and ``data/clean`` (the
prepare stage's outs: training noise is drawn on the fly, so it does not depend on degrade).
Writes ``models/dlw/``, ``reports/train_metrics.json`` and ``reports/train_curves/``. Ray's
folder (``runs/ray``) and the MLflow store are engine state, not DVC outs: rerunning after an
interruption resumes the experiment from its checkpoints.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from stages._common import run, start

log = logging.getLogger("train")


def main() -> None:
    params = start("train")
    from pipeline.tracking import disable_telemetry

    disable_telemetry()
    from pipeline.train.driver import TrainingError, run_training
    from pipeline.train.outputs import log_weight_maps, unweighted_scores, write_outputs

    p = params.train
    root = Path.cwd()
    sets = p.sets()
    log.info(
        "%d source sets × %d seeds%s; %d epochs × %d steps, batch %d, %d² patches, width %d",
        len(sets),
        len(p.seeds),
        f" × search {p.search}" if p.search else "",
        p.epochs,
        p.steps_per_epoch,
        p.batch_size,
        p.patch_size,
        p.width,
    )
    t0 = time.perf_counter()
    try:
        result = run_training(params, root)
    except TrainingError as exc:
        sys.exit(f"[train] error: {exc}")
    fit_s = time.perf_counter() - t0
    unweighted = unweighted_scores(params, root / "data" / "clean")
    metrics = write_outputs(result, params, root, unweighted)
    logged = log_weight_maps(result, params, root / "data" / "clean")
    tracked = result.tracker is None or result.tracker.enabled
    log.info(
        "experiment %s%s: %d trials in %.0f s (%s)",
        result.experiment,
        " (resumed)" if result.resumed else "",
        len(result.outcomes),
        fit_s,
        f"{logged} weight maps logged to {result.tracking_uri}"
        if tracked
        else f"not tracked: MLflow at {result.tracking_uri} unavailable",
    )
    cpu = [float(o.metrics.get("trial_cpu_s", 0.0)) for o in result.outcomes]
    if cpu and not result.resumed:  # a resumed trial's CPU counts only its last part
        log.info("trial CPU time: %.0f s in all, %.0f s for the longest trial", sum(cpu), max(cpu))
    log_table(metrics, p.source_models)


def log_table(metrics: dict, models: list[str]) -> None:
    """The validation MPSNR table: source set × source model, and the unweighted reference."""
    head = f"{'source set':<14}" + "".join(f"{m:>9}" for m in models) + f"{'mean(own)':>11}"
    log.info("validation MPSNR (dB) on the val patches under the training noise:")
    log.info("%s", head)
    rows = [("unweighted", metrics["unweighted"], None)]
    rows += [(name, row, row["val_mpsnr"]) for name, row in metrics["source_sets"].items()]
    for name, row, own in rows:
        cells = "".join(f"{row.get(f'val_mpsnr_{m}', float('nan')):>9.2f}" for m in models)
        log.info("%-14s%s%s", name, cells, "" if own is None else f"{own:>11.2f}")


if __name__ == "__main__":
    run("train", main)
