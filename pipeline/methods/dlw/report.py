"""DLW's own report sections: the quality of its weight maps and the source-set comparison.

1. *Weight maps*: per case and weighting, the AUC of −w for detecting corrupted pixels and the
   correlation with the oracle map (1/σ², corrupted pixels 0), beside the MPSNR gain the map
   brings averaged over restorers — does a map that finds the corrupted pixels also restore
   better? The built-in maps are listed for scale.
2. *Source sets*: DLW trains one weight net per set of source models (the variant name, e.g.
   ``nn+tv``). Per variant and restorer, the mean paired gain over the reference weighting
   (averaged over cases), marked ``own`` when the restorer is one of the variant's source models
   and ``transfer`` otherwise: a map that only helps the models it was trained through would
   gain on ``own`` and not on ``transfer``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report.leaderboard import NO_WEIGHTING, weight_quality
from pipeline.report.sections import Section

METHOD = "dlw"


def quality_section(lb: pd.DataFrame, reference: str) -> Section:
    from pipeline.report.charts import auc_vs_gain

    keep = lb[(lb["weighting_method"] == METHOD) | (lb["weighting_method"] == "")]
    q = weight_quality(keep, reference)
    return Section(
        name="dlw-weight-maps",
        title="DLW: weight-map quality beside restoration quality",
        text=(
            "AUC of −w for detecting corrupted pixels (1: corrupted pixels get the lowest "
            "weights; 0.5: chance; undefined for cases without corrupted pixels) and the "
            "correlation with the oracle map, against the MPSNR gain over "
            f"{reference} averaged over the restorers that take a weighting (significant: "
            "Holm-adjusted p < 0.05 and a positive gain). Built-in maps for scale."
        ),
        table=q,
        columns={
            "case": "Case",
            "weighting": "Weighting",
            "weight_auc": "Weight AUC ↑",
            "oracle_corr": "Oracle corr. ↑",
            "mpsnr_gain": "Mean gain ↑ (dB)",
            "gain_min": "min over restorers",
            "gain_max": "max over restorers",
            "n_significant": "Restorers with significant gain",
            "n_restorers": "Restorers",
        },
        digits={
            "mpsnr_gain": 2,
            "gain_min": 2,
            "gain_max": 2,
            "n_significant": 0,
            "n_restorers": 0,
        },
        figure=auc_vs_gain(q, reference),
        caption="Weight-map AUC vs mean MPSNR gain, one point per case and weighting.",
    )


def source_set_frame(lb: pd.DataFrame) -> pd.DataFrame:
    """Per DLW variant × restorer: the mean over cases of the paired gain (dB) over the
    reference weighting, its range over cases, the number of cases, and whether the restorer
    is one of the variant's source models (``own``) or not (``transfer``)."""
    d = lb[(lb["weighting_method"] == METHOD) & (lb["weighting"] != NO_WEIGHTING)]
    records = []
    for (variant, restorer), g in d.groupby(["weighting_variant", "restorer"], sort=True):
        gains = g["mpsnr_gain"].to_numpy(dtype=np.float64)
        ok = np.isfinite(gains)
        sources = str(variant).split("+")
        records.append(
            {
                "variant": str(variant),
                "restorer": str(restorer),
                "relation": "own" if str(restorer) in sources else "transfer",
                "mean_gain": float(gains[ok].mean()) if ok.any() else np.nan,
                "min_gain": float(gains[ok].min()) if ok.any() else np.nan,
                "max_gain": float(gains[ok].max()) if ok.any() else np.nan,
                "n_cases": int(ok.sum()),
                "n_significant": int(((g["mpsnr_p_holm"] < 0.05) & (g["mpsnr_gain"] > 0)).sum()),
            }
        )
    cols = [
        "variant",
        "restorer",
        "relation",
        "mean_gain",
        "min_gain",
        "max_gain",
        "n_cases",
        "n_significant",
    ]
    return pd.DataFrame.from_records(records, columns=cols)


def source_set_section(lb: pd.DataFrame, reference: str) -> Section | None:
    f = source_set_frame(lb)
    if f.empty:
        return None
    own = f.loc[f["relation"] == "own", "mean_gain"].mean()
    other = f.loc[f["relation"] == "transfer", "mean_gain"].mean()
    return Section(
        name="dlw-source-sets",
        title="DLW: source sets, own models vs transfer",
        text=(
            f"Mean paired MPSNR gain over {reference} of each DLW variant (named by its source "
            "models) with each restorer, averaged over the cases; 'own': the restorer was one "
            "of the variant's source models in training; 'transfer': it was not. Averages over "
            f"rows: own {own:+.2f} dB, transfer {other:+.2f} dB."
        ),
        table=f,
        columns={
            "variant": "Source set",
            "restorer": "Restorer",
            "relation": "Relation",
            "mean_gain": "Mean gain ↑ (dB)",
            "min_gain": "min over cases",
            "max_gain": "max over cases",
            "n_cases": "Cases",
            "n_significant": "Cases significant",
        },
        digits={"mean_gain": 2, "min_gain": 2, "max_gain": 2, "n_cases": 0, "n_significant": 0},
    )


def report_sections(results: pd.DataFrame, lb: pd.DataFrame, reference: str) -> list[Section]:
    out = [quality_section(lb, reference)]
    s = source_set_section(lb, reference)
    if s is not None:
        out.append(s)
    return out
