"""The guidance method's own report section: its variants side by side.

Per variant (``alternating-tiny``, ``naive-tiny``, ``none-tiny``, …) and case: the MPSNR of its
restorer (on the blur cases it takes) with the 95 % t-interval over test images, beside the
Wiener filter and the reference restorer on the same case; and, for the variants with a proxy,
the mean paired gain of its weighting (w ∝ 1/σ̂²) over the reference weighting, averaged over
the restorers that took it, with the correlation of its map with the oracle map (1/σ²). The
paper's claims (guidance > none; alternating ≥ naive) read off the first table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report.leaderboard import NO_WEIGHTING
from pipeline.report.sections import Section
from pipeline.report.stats import t_interval

METHOD = "guidance"
ORACLE = "+oracle"  # pipeline.evaluate.restorers.ORACLE_SUFFIX (imported there with torch)


def _variant(restorer: str) -> str:
    head, _, rest = restorer.partition(":")
    return rest if head == METHOD and rest else restorer


def restorer_frame(lb: pd.DataFrame) -> pd.DataFrame:
    """Per case: each guidance restorer and the peers without weighting (MPSNR mean and CI)."""
    cases = sorted(set(lb.loc[lb["restorer_method"] == METHOD, "case"]))
    rows = lb[lb["case"].isin(cases) & (lb["weighting"] == NO_WEIGHTING)]
    out = rows[["case", "restorer", "mpsnr_mean", "mpsnr_ci_low", "mpsnr_ci_high", "mssim_mean",
                "n"]].copy()  # fmt: skip
    # The label after the method: "alternating-tiny", "alternating-tiny+oracle" (told σ).
    out["variant"] = [_variant(r) for r in out["restorer"]]
    return out.sort_values(["case", "mpsnr_mean"], ascending=[True, False]).reset_index(drop=True)


def paired_frame(results: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per blur case, the paper's comparisons as paired MPSNR differences over the test images
    (seeds averaged per image first) with a t-interval: each guided variant minus the variant
    without guidance of the same denoiser, and alternating minus naive."""
    r = results[(results["restorer_method"] == METHOD) & (results["weighting"] == NO_WEIGHTING)]
    cols = ["case", "comparison", "mean_diff", "ci_low", "ci_high", "n"]
    if r.empty:
        return pd.DataFrame(columns=cols)
    r = r.assign(variant=[_variant(x) for x in r["restorer"]])
    per = r.groupby(["case", "variant", "image_id"], sort=True)["mpsnr"].mean()
    records = []
    for case, g in per.groupby(level="case", sort=True):
        by = {v: s.droplevel([0, 1]) for v, s in g.groupby(level="variant")}
        pairs = []
        for v in by:
            if v.endswith(ORACLE):  # told the true σ map: what the estimate σ̂ costs
                pairs.append((v, v.removesuffix(ORACLE)))
                continue
            guidance, _, denoiser = v.partition("-")
            if guidance != "none" and f"none-{denoiser}" in by:
                pairs.append((v, f"none-{denoiser}"))
            if guidance == "alternating" and f"naive-{denoiser}" in by:
                pairs.append((v, f"naive-{denoiser}"))
        for a, b in (p for p in pairs if p[1] in by):
            d = (by[a] - by[b]).dropna().to_numpy(dtype=np.float64)
            iv = t_interval(d, confidence)
            records.append({"case": case, "comparison": f"{a} − {b}", "mean_diff": iv.mean,
                            "ci_low": iv.low, "ci_high": iv.high, "n": iv.n})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def weighting_frame(lb: pd.DataFrame) -> pd.DataFrame:
    d = lb[(lb["weighting_method"] == METHOD) & (lb["weighting"] != NO_WEIGHTING)]
    if d.empty:
        return pd.DataFrame(columns=["case", "variant", "mean_gain", "oracle_corr", "restorers"])
    g = d.groupby(["case", "weighting_variant"], sort=True)
    out = g.agg(
        mean_gain=("mpsnr_gain", "mean"),
        oracle_corr=("oracle_corr_mean", "mean"),
        restorers=("restorer", "nunique"),
    ).reset_index()
    return out.rename(columns={"weighting_variant": "variant"})


def report_sections(
    results: pd.DataFrame, lb: pd.DataFrame, reference: str, confidence: float = 0.95
) -> list[Section]:
    out = []
    r = restorer_frame(lb)
    if not r.empty:
        out.append(
            Section(
                name="guidance-restorers",
                title="Guidance: alternating vs naive vs no guidance (deblurring)",
                text=(
                    "MPSNR of the unrolled HQS net of each variant on the blur cases, with its "
                    "95 % t-interval over test images, beside the restorers that take no "
                    "weighting on the same case (the Wiener filter is given the true σ: "
                    "oracle-informed; so is '+oracle', the net told the true σ map instead of "
                    "its σ̂). The paper's claims: guidance beats none; alternating is at least "
                    "as good as naive; σ̂ costs little against the true map."
                ),
                table=r,
                columns={
                    "case": "Case",
                    "variant": "Restorer / variant",
                    "mpsnr_mean": "MPSNR ↑ (dB)",
                    "mpsnr_ci_low": "CI low",
                    "mpsnr_ci_high": "CI high",
                    "mssim_mean": "MSSIM ↑",
                    "n": "n",
                },
                digits={
                    "mpsnr_mean": 2,
                    "mpsnr_ci_low": 2,
                    "mpsnr_ci_high": 2,
                    "mssim_mean": 3,
                    "n": 0,
                },
            )
        )
    d = paired_frame(results, confidence)
    if not d.empty:
        out.append(
            Section(
                name="guidance-paired",
                title="Guidance: the paper's comparisons, paired over images",
                text=(
                    "Per blur case, the mean MPSNR difference of two variants' restorations of "
                    "the same test images with its 95 % t-interval (the image is the unit): "
                    "each guided variant minus the one without guidance, alternating minus "
                    "naive, and the net told the true σ map minus its own σ̂. An interval that "
                    "excludes 0 is a difference at this n."
                ),
                table=d,
                columns={
                    "case": "Case",
                    "comparison": "Comparison",
                    "mean_diff": "Mean difference (dB)",
                    "ci_low": "CI low",
                    "ci_high": "CI high",
                    "n": "n",
                },
                digits={"mean_diff": 2, "ci_low": 2, "ci_high": 2, "n": 0},
            )
        )
    w = weighting_frame(lb)
    if not w.empty:
        out.append(
            Section(
                name="guidance-weightings",
                title="Guidance: σ̂ maps as weightings",
                text=(
                    f"Mean paired MPSNR gain over {reference} of the weighting w ∝ 1/σ̂² of each "
                    "variant, averaged over the restorers that took it, and the correlation of "
                    "the map with the oracle map (1/σ², corrupted pixels 0)."
                ),
                table=w,
                columns={
                    "case": "Case",
                    "variant": "Variant",
                    "mean_gain": "Mean gain ↑ (dB)",
                    "oracle_corr": "Oracle corr. ↑",
                    "restorers": "Restorers",
                },
                digits={"mean_gain": 2, "oracle_corr": 3, "restorers": 0},
            )
        )
    return out
