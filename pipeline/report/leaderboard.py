"""``reports/leaderboard.parquet`` and ``reports/metrics.json`` from ``reports/results.parquet``.

One leaderboard row per cell (case, restorer, weighting). The table never looks at a method's
name: what a row is follows from its label columns (``weighting`` ``"none"``: a restorer that
takes no weighting; ``restorer_role``: ``target``, ``peer`` or ``learned``; a non-empty
``weighting_method`` / ``restorer_method``: a learned weighting / restorer). For every metric m
of :data:`METRICS`, over the n test images of the cell (the image is the unit,
docs/conventions.md):

1. seeds are averaged per image first: ``x_i = mean_s m(i, s)``, the seeds s of a cell being its
   distinct (``weighting_seed``, ``restorer_seed``) pairs;
2. ``m_mean = mean_i x_i`` with a Student t-interval (n − 1 dof; NaN for n < 2);
3. ``m_seed_std`` = standard deviation over seeds of the per-seed image means
   ``mean_i m(i, s)`` (n_seeds − 1 in the denominator; NaN for one seed);
4. ``m_gain = mean_i (x_i − u_i)`` with ``u_i`` the *reference* weighting (the report option
   ``reference``, ``unweighted`` by default) of the same restorer and case on the same image
   (paired: only images present in both), its t-interval, the two-sided paired p-value (t-test,
   or the exact sign-flip test, :mod:`pipeline.report.stats`) and Holm's adjustment over every
   comparison of that metric in the table. A row whose weighting is ``none`` has no reference
   (gain NaN), and the reference cell itself is no comparison (gain 0, p NaN).

Gains are differences in the metric's own unit (dB for MPSNR); for SAM and ERGAS, where lower is
better, an improvement is a negative gain (:data:`BETTER`). ``rank`` orders the cells of one
(case, restorer) by mean MPSNR (1 = best, ties share the lower rank).
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
CELL = ("case", "restorer", "weighting")
SEEDS = ("weighting_seed", "restorer_seed")
# The default reference weighting of gains and paired tests (report option ``reference``).
REFERENCE = "unweighted"
# The weighting label of a restorer that takes no weighting (peer baselines, learned restorers
# without a weight input): such a row has no reference and no gain.
NO_WEIGHTING = "none"
# Label columns carried into the leaderboard (one value per cell; several are joined by " | ").
LABELS = (
    "weighting_method",
    "weighting_variant",
    "restorer_method",
    "restorer_variant",
    "restorer_role",
    "noise_model",
    "case_params",
    "task",  # the restoration task: the forward operator's label, or "denoise"
)
# What the report reads of results.parquet (a subset of the evaluate stage's RESULT_COLUMNS,
# pipeline/evaluate/results.py; a test keeps the two in step).
REQUIRED_COLUMNS = (
    "weighting",
    "weighting_method",
    "weighting_variant",
    "weighting_seed",
    "restorer",
    "restorer_method",
    "restorer_variant",
    "restorer_seed",
    "restorer_role",
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
    "restorer",
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


def _reference_key(key: tuple, keys: set[tuple], reference: str) -> tuple | None:
    """The ``reference`` cell of the same case and restorer; None for a restorer that takes no
    weighting or when that restorer was not run with the reference weighting."""
    case, restorer, weighting = key
    if weighting == NO_WEIGHTING:
        return None
    ref = (case, restorer, reference)
    return ref if ref in keys else None


def leaderboard(
    df: pd.DataFrame, confidence: float = 0.95, test: str = "t", reference: str = REFERENCE
) -> pd.DataFrame:
    """The leaderboard table of ``df`` (rows of results.parquet), one row per cell; gains are
    paired differences from the ``reference`` weighting of the same case and restorer."""
    check_columns(df, "results")
    df = df.copy()
    if "task" not in df.columns:  # results written before tasks had operators: all denoising
        df["task"] = "denoise"
    for col in (*CELL, *LABELS, "image_id"):
        df[col] = df[col].astype(str)
    for col in SEEDS:
        df[col] = df[col].astype(np.int64)
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
    # Seed spread: std (one dof) over the seed pairs of the per-seed image mean; NaN for one.
    by_seed = df.groupby([*cell_cols, *SEEDS], sort=True)[list(METRICS)].mean()
    seed_std = by_seed.groupby(level=cell_cols, sort=True).std(ddof=1)
    n_seeds = by_seed.groupby(level=cell_cols, sort=True).size()
    g = df.groupby(cell_cols, sort=True)
    agg = g.agg(
        converged_fraction=("converged", "mean"),
        iterations_mean=("iterations", "mean"),
        time_s_mean=("time_s", "mean"),
        strength_on_edge_fraction=("strength_on_edge", "mean"),
        oracle_informed=("oracle_informed", "any"),
        synthetic=("synthetic", "any"),
        n_rows=("image_id", "size"),
    )
    labels = {col: g[col].agg(lambda s: " | ".join(sorted({str(v) for v in s}))) for col in LABELS}
    keys = set(images)

    records = []
    for key in sorted(images):
        ids, per = images[key]
        rec: dict[str, Any] = dict(zip(CELL, key, strict=True))
        for col, values in labels.items():
            rec[col] = values[key]
        base = _reference_key(key, keys, reference)
        rec["reference"] = "" if base is None else reference
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
        rec["n_seeds"] = int(n_seeds.loc[key])
        rec["n_rows"] = int(a["n_rows"])
        records.append(rec)

    lb = pd.DataFrame.from_records(records)
    for m in METRICS:
        lb[f"{m}_p_holm"] = holm(lb[f"{m}_p"].to_numpy())
    lb["rank"] = (
        lb.groupby(["case", "restorer"])["mpsnr_mean"]
        .rank(ascending=False, method="min")
        .astype("Int64")
    )
    return _ordered(lb, df)


def _nanmean(values) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _ordered(lb: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Cases and restorers in the order the results list them, then by rank: a stable layout."""
    case_pos = {c: i for i, c in enumerate(first_seen(df["case"].astype(str)))}
    restorer_pos = {t: i for i, t in enumerate(first_seen(df["restorer"].astype(str)))}
    lb = lb.assign(
        _c=lb["case"].map(case_pos),
        _t=lb["restorer"].map(restorer_pos),
        _r=lb["rank"].fillna(10**9).astype(np.int64),
    )
    lb = lb.sort_values(["_c", "_t", "_r", "weighting"], kind="stable")
    lb = lb.drop(columns=["_c", "_t", "_r"]).reset_index(drop=True)
    front = [*CELL, "rank", "n", "n_seeds", "reference", *LABELS]
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


def _put(entry: dict[str, Any], key: str, value: Any) -> None:
    """Adds a key built from the data; two labels mapping to one key would silently overwrite
    each other's number, so that is an error."""
    if key in entry:
        raise ValueError(f"metrics.json: two entries for the key {key!r} (rename a label)")
    entry[key] = value


def weighting_methods(lb: pd.DataFrame) -> list[str]:
    """The methods that provide learned weightings (distinct non-empty ``weighting_method``)."""
    weighted = lb[lb["weighting"] != NO_WEIGHTING]
    return sorted({str(m) for m in weighted["weighting_method"] if str(m)})


def headline(
    lb: pd.DataFrame, case_order: Sequence[str] | None = None, reference: str = REFERENCE
) -> dict[str, Any]:
    """``reports/metrics.json`` for ``dvc metrics show``. Per case, averaged over the restorers
    that take a weighting (``weighting`` ≠ ``none``):

    - ``best_weighting``: the best achievable weighting (not oracle-informed, which knows the
      true σ and mask, and not the reference) and ``best_weighting_gain_db``, its mean MPSNR gain
      over the reference;
    - for each method M providing learned weightings: ``best_<M>`` (the variant with the largest
      mean gain), ``best_<M>_gain_db`` and ``mpsnr_best_<M>``;
    - ``mpsnr_reference`` and ``mpsnr_<w>`` of each built-in weighting w present (unweighted,
      handcrafted, oracle), with ``<w>_gain_db`` for those other than the reference;
    - ``mpsnr_<restorer>`` of each restorer that takes no weighting (peers, learned restorers).

    Keys are built from the labels in the data (sorted on writing)."""
    cases = list(case_order) if case_order is not None else first_seen(lb["case"])
    out: dict[str, Any] = {
        "synthetic": bool(lb["synthetic"].any()),
        "reference": reference,
        "n_cells": len(lb),
        "n_images_max": int(lb["n"].max()),
        "significant_mpsnr_gains": int(
            ((lb["mpsnr_p_holm"] < 0.05) & (lb["mpsnr_gain"] > 0)).sum()
        ),
        "cases": {},
    }
    for case in cases:
        c = lb[lb["case"] == case]
        weighted = c[c["weighting"] != NO_WEIGHTING]
        by = weighted.groupby("weighting", sort=True)
        gain = by["mpsnr_gain"].mean()
        mean = by["mpsnr_mean"].mean()
        informed = by["oracle_informed"].any()
        method = by["weighting_method"].first()
        variant = by["weighting_variant"].first()
        achievable = [w for w in gain.index if not informed[w] and w != reference]
        best = _best(gain.reindex(achievable))
        entry: dict[str, Any] = {
            "n_images": int(c["n"].max()),
            "best_weighting": best,
            "best_weighting_gain_db": _num(gain.get(best, math.nan)),
            "mpsnr_reference": _num(mean.get(reference, math.nan)),
        }
        for m in sorted({str(v) for v in method if str(v)}):
            b = _best(gain.reindex(method.index[method == m]))
            _put(entry, f"best_{m}", (variant[b] or b) if b else None)
            _put(entry, f"best_{m}_gain_db", _num(gain.get(b, math.nan)))
            _put(entry, f"mpsnr_best_{m}", _num(mean.get(b, math.nan)))
        for w in method.index[method == ""]:
            _put(entry, f"mpsnr_{w}", _num(mean[w]))
            if w != reference:
                _put(entry, f"{w}_gain_db", _num(gain[w]))
        for row in c[c["weighting"] == NO_WEIGHTING].itertuples():
            _put(entry, f"mpsnr_{row.restorer}", _num(row.mpsnr_mean))
        out["cases"][str(case)] = entry
    return out


QUALITY_COLUMNS = (
    "case",
    "weighting",
    "weighting_method",
    "weight_auc",
    "oracle_corr",
    "mpsnr_gain",
    "gain_min",
    "gain_max",
    "n_restorers",
    "n_significant",
)


def weight_quality(lb: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Weight-map quality beside restoration quality, per case × weighting (restorers that take
    a weighting; every weighting but the reference): mean AUC and oracle correlation of the
    maps, the MPSNR gain averaged over restorers (and its range), and how many restorers gain
    significantly (Holm)."""
    var = lb[(lb["weighting"] != NO_WEIGHTING) & (lb["weighting"] != reference)]
    if var.empty:
        return pd.DataFrame(columns=list(QUALITY_COLUMNS))
    sig = (var["mpsnr_p_holm"] < 0.05) & (var["mpsnr_gain"] > 0)
    g = var.assign(_sig=sig).groupby(["case", "weighting"], sort=False)
    q = g.agg(
        weighting_method=("weighting_method", "first"),
        weight_auc=("weight_auc_mean", "mean"),
        oracle_corr=("oracle_corr_mean", "mean"),
        mpsnr_gain=("mpsnr_gain", "mean"),
        gain_min=("mpsnr_gain", "min"),
        gain_max=("mpsnr_gain", "max"),
        n_restorers=("restorer", "nunique"),
        n_significant=("_sig", "sum"),
    ).reset_index()
    q = q.sort_values(["case", "weighting"], kind="stable", key=_case_key(lb))
    return q[list(QUALITY_COLUMNS)].reset_index(drop=True)


def _case_key(lb: pd.DataFrame):
    pos = {c: i for i, c in enumerate(first_seen(lb["case"]))}

    def key(col: pd.Series) -> pd.Series:
        return col.map(pos) if col.name == "case" else col

    return key
