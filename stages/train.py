"""DVC stage ``train@<method>``: one learned method's trials on Ray Tune, tracked in MLflow.

``python -m stages.train <method>`` reads params ``seed``, ``device``, ``tracking``, ``ray`` and
``train.<method>``, and ``data/clean`` (the prepare stage's outs: training noise is drawn on the
fly, so it does not depend on degrade). Writes ``models/<method>/`` and
``reports/train/<method>/`` (metrics and curves). Ray's folder (``runs/ray``) and the MLflow store
are engine state, not DVC outs: rerunning after an interruption resumes the experiment from its
checkpoints.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from stages._common import run, start

log = logging.getLogger("train")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m stages.train <method>")
    name = sys.argv[1]
    params = start("train")
    from pipeline.tracking import disable_telemetry

    disable_telemetry()
    from pipeline.train.outputs import log_figures, write_outputs
    from pipeline.train.runner import TrainingError, run_training

    method = params.train.method(name)
    method.check(f"train.{name}")
    root = Path.cwd()
    log.info("%s: %s", name, method.describe())
    t0 = time.perf_counter()
    try:
        result = run_training(method, params, root)
    except TrainingError as exc:
        sys.exit(f"[train] error: {exc}")
    fit_s = time.perf_counter() - t0
    context = {"seed": params.seed, "data_dir": str(root / "data" / "clean")}
    metrics = write_outputs(result, params, root, context)
    logged = log_figures(result, context)
    tracked = result.tracker is None or result.tracker.enabled
    log.info(
        "experiment %s%s: %d trials in %.0f s (%s)",
        result.experiment,
        " (resumed)" if result.resumed else "",
        len(result.outcomes),
        fit_s,
        f"{logged} figures logged to {result.tracking_uri}"
        if tracked
        else f"not tracked: MLflow at {result.tracking_uri} unavailable",
    )
    cpu = [float(o.metrics.get("trial_cpu_s", 0.0)) for o in result.outcomes]
    if cpu and not result.resumed:  # a resumed trial's CPU counts only its last part
        log.info("trial CPU time: %.0f s in all, %.0f s for the longest trial", sum(cpu), max(cpu))
    for line in method.summary_lines(metrics):
        log.info("%s", line)


if __name__ == "__main__":
    run("train", main)
