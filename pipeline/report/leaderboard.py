"""``reports/leaderboard.parquet`` and ``reports/metrics.json`` from ``reports/results.parquet``.

One leaderboard row per cell (case, target, method, weighting). For every metric m of
:data:`METRICS`, over the n test images of the cell (the image is the unit, docs/conventions.md):

1. seeds are averaged per image first: ``x_i = mean_s m(i, s)``;
2. ``m_mean = mean_i x_i`` with a Student t-interval (n − 1 dof; NaN for n < 2);
3. ``m_seed_std`` = standard deviation over seeds of the per-seed image means
   ``mean_i m(i, s)`` (n_seeds − 1 in the denominator; NaN for one seed);
4. ``m_gain = mean_i (x_i − u_i)`` with ``u_i`` the ``unweighted`` weighting of the same target and
   case on the same image (paired: only images present in both), its t-interval, the two-sided
   paired p-value (t-test, or the exact sign-flip test, :mod:`pipeline.report.stats`) and Holm's
   adjustment over every comparison of that metric in the table.

Gains are differences in the metric's own unit (dB for MPSNR); for SAM and ERGAS, where lower is
better, an improvement is a negative gain (:data:`BETTER`). ``rank`` orders the cells of one
(case, target) by mean MPSNR (1 = best, ties share the lower rank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.report.stats import holm, paired_p, t_interval

METRICS = ("mpsnr", "mssim", "sam", "ergas")
BETTER = {"mpsnr": "higher", "mssim": "higher", "sam": "lower", "ergas": "lower"}
CELL = ("case", "target", "method", "weighting")
BASELINE = "unweighted"
# What the report reads of results.parquet (a subset of the evaluate stage's RESULT_COLUMNS,
# pipeline/evaluate/results.py; a test keeps the two in step).
REQUIRED_COLUMNS = (
    "method",
    "weighting",
    "weighting_kind",
    "source_set",
    "seed",
    "target",
    "case",
    "noise_model",
    "case_params",
    "image_id",
    "synthetic",
    "noisy_mpsnr",
    *METRICS,
    "weight_auc",
    "oracle_corr",
    "strength_on_edge",
    "oracle_informed",
    "time_s",
    "iterations",
    "converged",
    "git_commit",
    "params_hash",
    "dataset_hash",
)
GALLERY_COLUMNS = (
    "case",
    "image_id",
    "kind",
    "weighting",
    "target",
    "band",
    "height",
    "width",
    "values",
)


def check_columns(df: pd.DataFrame, source: str, required: Sequence[str] = REQUIRED_COLUMNS):
    """A table lacking a column the report needs is an error naming the file and the columns."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; the report needs {list(required)}"
        )
    if len(df) == 0:
        raise ValueError(f"{source}: the table has no rows")


def first_seen(values: pd.Series) -> list:
    """Distinct values in order of first appearance (the order the evaluate stage wrote)."""
    return list(dict.fromkeys(values.tolist()))


def _baseline_key(key: tuple, keys: set[tuple]) -> tuple | None:
    """The ``unweighted`` cell of the same case and target (the same method if several)."""
    case, target, method, _ = key
    same = (case, target, method, BASELINE)
    if same in keys:
        return same
    others = sorted(k for k in keys if k[:2] == (case, target) and k[3] == BASELINE)
    return others[0] if len(others) == 1 else None


def leaderboard(df: pd.DataFrame, confidence: float = 0.95, test: str = "t") -> pd.DataFrame:
    """The leaderboard table of ``df`` (rows of results.parquet), one row per cell."""
    check_columns(df, "results")
    df = df.copy()
    for col in (*CELL, "image_id"):
        df[col] = df[col].astype(str)
    for col in ("converged", "strength_on_edge", "oracle_informed", "synthetic"):
        df[col] = df[col].astype(bool)
    df["iterations"] = df["iterations"].astype(np.float64)
    cell_cols = list(CELL)
    cols = [*METRICS, "weight_auc", "oracle_corr", "noisy_mpsnr"]

    # Step 1: average the seeds of each image (pandas' mean skips NaN, e.g. an undefined AUC).
    per_image = df.groupby([*cell_cols, "image_id"], sort=True)[cols].mean()
    images: dict[tuple, tuple[np.ndarray, pd.DataFrame]] = {}
    for key, frame in per_image.groupby(level=cell_cols, sort=True):
        ids = frame.index.get_level_values("image_id").to_numpy()
        images[tuple(key)] = (ids, frame.reset_index(drop=True))
    # Seed spread: std (one dof) over seeds of the per-seed image mean; NaN for one seed.
    by_seed = df.groupby([*cell_cols, "seed"], sort=True)[list(METRICS)].mean()
    seed_std = by_seed.groupby(level=cell_cols, sort=True).std(ddof=1)
    g = df.groupby(cell_cols, sort=True)
    agg = g.agg(
        converged_fraction=("converged", "mean"),
        iterations_mean=("iterations", "mean"),
        time_s_mean=("time_s", "mean"),
        strength_on_edge_fraction=("strength_on_edge", "mean"),
        oracle_informed=("oracle_informed", "any"),
        synthetic=("synthetic", "any"),
        n_seeds=("seed", "nunique"),
        n_rows=("seed", "size"),
    )
    labels = {
        col: g[col].agg(lambda s: " | ".join(sorted({str(v) for v in s})))
        for col in ("weighting_kind", "source_set", "noise_model", "case_params")
    }
    keys = set(images)

    records = []
    for key in sorted(images):
        ids, per = images[key]
        rec: dict[str, Any] = dict(zip(CELL, key, strict=True))
        for col, values in labels.items():
            rec[col] = values[key]
        base = _baseline_key(key, keys)
        if base is not None:
            # Pairs: the images present in both cells.
            _, ia, ib = np.intersect1d(ids, images[base][0], return_indices=True)
        for m in METRICS:
            x = per[m].to_numpy(dtype=np.float64)
            iv = t_interval(x, confidence)
            rec[f"{m}_mean"], rec[f"{m}_ci_low"], rec[f"{m}_ci_high"] = iv.mean, iv.low, iv.high
            rec[f"{m}_n"] = iv.n
            rec[f"{m}_seed_std"] = float(seed_std.loc[key, m])
            gain, low, high, n_pairs, p, used = math.nan, math.nan, math.nan, 0, math.nan, ""
            if base is not None:
                a = x[ia]
                b = images[base][1][m].to_numpy(dtype=np.float64)[ib]
                ok = np.isfinite(a) & np.isfinite(b)
                a, b = a[ok], b[ok]
                giv = t_interval(a - b, confidence)
                gain, low, high, n_pairs = giv.mean, giv.low, giv.high, giv.n
                if base != key:
                    p, used = paired_p(a, b, test)
            rec[f"{m}_gain"], rec[f"{m}_gain_ci_low"], rec[f"{m}_gain_ci_high"] = gain, low, high
            rec[f"{m}_gain_n"], rec[f"{m}_p"], rec[f"{m}_test"] = n_pairs, p, used
        for col in ("weight_auc", "oracle_corr", "noisy_mpsnr"):
            rec[f"{col}_mean"] = _nanmean(per[col])
        a = agg.loc[key]
        rec["converged_fraction"] = float(a["converged_fraction"])
        rec["iterations_mean"] = float(a["iterations_mean"])
        rec["time_s_mean"] = float(a["time_s_mean"])
        rec["strength_on_edge_fraction"] = float(a["strength_on_edge_fraction"])
        rec["oracle_informed"] = bool(a["oracle_informed"])
        rec["synthetic"] = bool(a["synthetic"])
        rec["n"] = len(ids)
        rec["n_seeds"] = int(a["n_seeds"])
        rec["n_rows"] = int(a["n_rows"])
        records.append(rec)

    lb = pd.DataFrame.from_records(records)
    for m in METRICS:
        lb[f"{m}_p_holm"] = holm(lb[f"{m}_p"].to_numpy())
    lb["rank"] = (
        lb.groupby(["case", "target"])["mpsnr_mean"]
        .rank(ascending=False, method="min")
        .astype("Int64")
    )
    return _ordered(lb, df)


def _nanmean(values) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _ordered(lb: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Cases and targets in the order the results list them, then by rank: a stable layout."""
    case_pos = {c: i for i, c in enumerate(first_seen(df["case"].astype(str)))}
    target_pos = {t: i for i, t in enumerate(first_seen(df["target"].astype(str)))}
    lb = lb.assign(
        _c=lb["case"].map(case_pos),
        _t=lb["target"].map(target_pos),
        _r=lb["rank"].fillna(10**9).astype(np.int64),
    )
    lb = lb.sort_values(["_c", "_t", "_r", "method", "weighting"], kind="stable")
    lb = lb.drop(columns=["_c", "_t", "_r"]).reset_index(drop=True)
    front = [*CELL, "rank", "n", "n_seeds", "weighting_kind", "source_set"]
    front += ["noise_model", "case_params"]
    parts = ("mean", "ci_low", "ci_high", "n", "seed_std", "gain", "gain_ci_low", "gain_ci_high")
    parts += ("gain_n", "p", "p_holm", "test")
    front += [f"{m}_{part}" for m in METRICS for part in parts]
    return lb[front + [c for c in lb.columns if c not in front]]


def _num(x) -> float | None:
    """Rounded for a readable metrics file; NaN is not JSON, so it becomes null."""
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def _best(means: pd.Series) -> str | None:
    """The label with the largest finite value (ties: the first label in sorted order)."""
    means = means.dropna()
    if means.empty:
        return None
    means = means.sort_index()
    return str(means.index[int(np.argmax(means.to_numpy()))])


def headline(lb: pd.DataFrame, case_order: Sequence[str] | None = None) -> dict[str, Any]:
    """``reports/metrics.json`` for ``dvc metrics show``: per case, averaged over the
    variational targets (method ``dlw``): the best achievable weighting (handcrafted or a DLW
    source set; not the oracle, which knows the true σ and mask) and its MPSNR gain over
    ``unweighted``, the best DLW source set, and mean MPSNR of unweighted / handcrafted / oracle /
    best DLW, plus each baseline's (BM3D, BM4D, TV-L1) mean MPSNR. Keys are sorted on writing."""
    cases = list(case_order) if case_order is not None else first_seen(lb["case"])
    out: dict[str, Any] = {
        "synthetic": bool(lb["synthetic"].any()),
        "n_cells": len(lb),
        "n_images_max": int(lb["n"].max()),
        "significant_mpsnr_gains": int(
            ((lb["mpsnr_p_holm"] < 0.05) & (lb["mpsnr_gain"] > 0)).sum()
        ),
        "cases": {},
    }
    for case in cases:
        c = lb[lb["case"] == case]
        var = c[c["method"] == "dlw"]
        gain = var.groupby("weighting")["mpsnr_gain"].mean()
        mean = var.groupby("weighting")["mpsnr_mean"].mean()
        kinds = var.groupby("weighting")["weighting_kind"].first()
        achievable = kinds.index[kinds.isin(["handcrafted", "dlw"])]
        dlw = kinds.index[kinds == "dlw"]
        best = _best(gain.reindex(achievable))
        best_dlw = _best(gain.reindex(dlw))
        entry: dict[str, Any] = {
            "n_images": int(c["n"].max()),
            "best_weighting": best,
            "best_weighting_gain_db": _num(gain.get(best, math.nan)),
            "best_dlw": best_dlw.split(":", 1)[1] if best_dlw else None,
            "best_dlw_gain_db": _num(gain.get(best_dlw, math.nan)),
            "handcrafted_gain_db": _num(gain.get("handcrafted", math.nan)),
            "oracle_gain_db": _num(gain.get("oracle", math.nan)),
            "mpsnr_unweighted": _num(mean.get(BASELINE, math.nan)),
            "mpsnr_handcrafted": _num(mean.get("handcrafted", math.nan)),
            "mpsnr_oracle": _num(mean.get("oracle", math.nan)),
            "mpsnr_best_dlw": _num(mean.get(best_dlw, math.nan)),
        }
        for row in c[c["method"] != "dlw"].itertuples():
            entry[f"mpsnr_{row.target}"] = _num(row.mpsnr_mean)
        out["cases"][str(case)] = entry
    return out


def weight_quality(lb: pd.DataFrame) -> pd.DataFrame:
    """Weight-map quality beside restoration quality, per case × weighting (variational targets,
    weightings other than ``unweighted``): mean AUC and oracle correlation of the maps, the MPSNR
    gain averaged over targets (and its range), and how many targets gain significantly (Holm)."""
    var = lb[(lb["method"] == "dlw") & (lb["weighting"] != BASELINE)]
    if var.empty:
        return pd.DataFrame(
            columns=[
                "case",
                "weighting",
                "weight_auc",
                "oracle_corr",
                "mpsnr_gain",
                "gain_min",
                "gain_max",
                "n_targets",
                "n_significant",
            ]
        )
    sig = (var["mpsnr_p_holm"] < 0.05) & (var["mpsnr_gain"] > 0)
    g = var.assign(_sig=sig).groupby(["case", "weighting"], sort=False)
    q = g.agg(
        weight_auc=("weight_auc_mean", "mean"),
        oracle_corr=("oracle_corr_mean", "mean"),
        mpsnr_gain=("mpsnr_gain", "mean"),
        gain_min=("mpsnr_gain", "min"),
        gain_max=("mpsnr_gain", "max"),
        n_targets=("target", "nunique"),
        n_significant=("_sig", "sum"),
    ).reset_index()
    return q.sort_values(["case", "weighting"], kind="stable", key=_case_key(lb)).reset_index(
        drop=True
    )


def _case_key(lb: pd.DataFrame):
    pos = {c: i for i, c in enumerate(first_seen(lb["case"]))}

    def key(col: pd.Series) -> pd.Series:
        return col.map(pos) if col.name == "case" else col

    return key
