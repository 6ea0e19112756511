"""``reports/evaluate.json``: a small summary of the results table for ``dvc metrics show``
(the leaderboard and its statistics are the report stage's)."""

from __future__ import annotations

from typing import Any

from pipeline.evaluate.cells import NO_WEIGHTING

__all__ = ["summary"]


def summary(results) -> dict[str, Any]:
    """Per case: mean test MPSNR of each weighting (over the restorers that take one, and the
    images) and of each restorer that takes none (``baselines``); counts of cells, non-converged
    cells and edge choices; whether data is synthetic."""
    out: dict[str, Any] = {
        "cells": len(results),
        "not_converged": int((~results.converged).sum()),
        "strength_on_edge": int(results.strength_on_edge.sum()),
        "synthetic": bool(results.synthetic.any()),
        "cases": {},
    }
    weighted = results[results.weighting != NO_WEIGHTING]
    others = results[results.weighting == NO_WEIGHTING]
    for case in sorted(results.case.unique()):
        w = weighted[weighted.case == case]
        o = others[others.case == case]
        by_weighting = w.groupby("weighting").mpsnr.mean().round(4)
        by_method = o.groupby("restorer").mpsnr.mean().round(4)
        out["cases"][case] = {
            "noisy_mpsnr": round(float(results[results.case == case].noisy_mpsnr.mean()), 4),
            "mpsnr": {str(k): float(v) for k, v in sorted(by_weighting.items())},
            "baselines": {str(k): float(v) for k, v in sorted(by_method.items())},
        }
    return out
