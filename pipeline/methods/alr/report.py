"""The adversarial local regulariser's own report sections: critics across noise levels.

Prost et al. (2021), Table 1 in shape: a critic trained at one noise level (``s<σ>`` variants)
or on a range (``varying``), tested on i.i.d. Gaussian denoising at several σ. From the results
table, at the reference weighting, on the test split:

* ``alr-matrix``: σ_train (variant) × σ_test (case) MPSNR with a t-interval over test images,
  beside BM3D/BM4D given the true σ (oracle-informed) and the reference restorer;
* ``alr-vs-bm``: each variant minus the best BM3D/BM4D row per σ, paired over images;
* ``alr-claim``: at the highest test σ, ``varying`` minus each single-σ critic, paired over
  images, and a sentence saying whether "the varying-σ critic generalises best at high σ" holds
  here (significant at this n) or is tied.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.report.leaderboard import NO_WEIGHTING
from pipeline.report.sections import Section
from pipeline.report.stats import PAIRED_COLUMNS, PAIRED_DIGITS, paired_difference, t_interval

METHOD = "alr"
VARYING = "varying"
PEERS = ("bm3d", "bm4d")


def _sigma(case_params: str) -> float:
    s = json.loads(case_params).get("sigma_255")
    return float(s) / 255.0 if isinstance(s, int | float) else float("nan")


def iid_rows(results: pd.DataFrame, reference: str, baseline: str) -> pd.DataFrame:
    """Per (σ_test, row, image): MPSNR on the i.i.d. denoising cases where ALR was solved."""
    r = results[(results["split"] == "test") & (results["task"] == "denoise")
                & (results["noise_model"] == "iid")]  # fmt: skip
    mine = r[(r["restorer_method"] == METHOD) & (r["weighting"] == reference)]
    cols = ["sigma", "row", "image_id", "mpsnr"]
    if mine.empty:
        return pd.DataFrame(columns=cols)
    cases = set(mine["case"])
    peers = r[r["case"].isin(cases) & r["restorer"].isin(PEERS) & (r["weighting"] == NO_WEIGHTING)]
    base = r[r["case"].isin(cases) & (r["restorer"] == baseline) & (r["weighting"] == reference)]
    both = pd.concat(
        [
            mine.assign(row=mine["restorer_variant"]),
            peers.assign(row=peers["restorer"]),
            base.assign(row=baseline),
        ]
    )
    both = both.assign(sigma=[_sigma(p) for p in both["case_params"]])
    return both.groupby(["sigma", "row", "image_id"], sort=True)["mpsnr"].mean().reset_index()


def matrix_frame(per: pd.DataFrame, confidence: float) -> pd.DataFrame:
    cols = ["row", "sigma_test", "mpsnr_mean", "ci_low", "ci_high", "n"]
    records = []
    for (row, sigma), g in per.groupby(["row", "sigma"], sort=True):
        iv = t_interval(g["mpsnr"].to_numpy(np.float64), confidence)
        records.append({"row": row, "sigma_test": sigma, "mpsnr_mean": iv.mean,
                        "ci_low": iv.low, "ci_high": iv.high, "n": iv.n})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def versus_peer_frame(per: pd.DataFrame, variants: list[str], confidence: float) -> pd.DataFrame:
    cols = ["sigma_test", "comparison", "mean_diff", "ci_low", "ci_high", "n", "significant"]
    by = per.set_index(["sigma", "row", "image_id"])["mpsnr"]
    records = []
    for sigma in sorted(set(per["sigma"])):
        at = per[per["sigma"] == sigma]
        peers = [p for p in PEERS if p in set(at["row"])]
        if not peers:
            continue
        peer = max(peers, key=lambda p: at[at["row"] == p]["mpsnr"].mean())
        for v in variants:
            if v in set(at["row"]):
                records.append({"sigma_test": sigma, "comparison": f"{v} − {peer}",
                                **paired_difference(by.loc[(sigma, v)], by.loc[(sigma, peer)],
                                          confidence)})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def claim_frame(per: pd.DataFrame, variants: list[str], confidence: float) -> pd.DataFrame:
    """``varying`` minus each single-σ critic at the highest test σ (and every σ above the
    varying critic's training range, when there are several)."""
    cols = ["sigma_test", "comparison", "mean_diff", "ci_low", "ci_high", "n", "significant"]
    if VARYING not in variants or len(variants) < 2:
        return pd.DataFrame(columns=cols)
    by = per.set_index(["sigma", "row", "image_id"])["mpsnr"]
    top = max(per["sigma"])
    records = []
    for other in (v for v in variants if v != VARYING):
        if (top, other) in by.index.droplevel(2) and (top, VARYING) in by.index.droplevel(2):
            records.append({"sigma_test": top, "comparison": f"{VARYING} − {other}",
                            **paired_difference(by.loc[(top, VARYING)], by.loc[(top, other)],
                                      confidence)})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def claim_sentence(claim: pd.DataFrame) -> str:
    if claim.empty:
        return "The claim cannot be checked: the varying-σ critic or a single-σ one is missing."
    sigma = float(claim["sigma_test"].iloc[0])
    wins = claim["significant"] & (claim["mean_diff"] > 0)
    losses = claim["significant"] & (claim["mean_diff"] < 0)
    head = f"At the highest test σ ({sigma:.2f}), "
    if wins.all():
        return (
            head + "the varying-σ critic is significantly better than every single-σ one: "
            "the paper's finding holds here."
        )
    if losses.any():
        return (
            head
            + "the varying-σ critic is significantly worse than "
            + ", ".join(c.split(" − ")[1] for c in claim[losses]["comparison"])
            + ": the paper's finding does not hold here."
        )
    tied = ", ".join(c.split(" − ")[1] for c in claim[~wins]["comparison"])
    return (
        head + f"the varying-σ critic is tied with {tied} (no significant difference at "
        "this n): not shown here."
    )


def report_sections(results: pd.DataFrame, lb: pd.DataFrame, options) -> list[Section]:
    reference, confidence, baseline = (
        options.reference,
        options.confidence,
        options.reference_restorer,
    )
    per = iid_rows(results, reference, baseline)
    if per.empty:
        return []
    variants = sorted(set(results.loc[results["restorer_method"] == METHOD, "restorer_variant"]))
    variants = [v for v in variants if v in set(per["row"])]
    pct = f"{confidence:.0%}"
    matrix = matrix_frame(per, confidence)
    claim = claim_frame(per, variants, confidence)
    return [
        Section(
            name="alr-matrix",
            title="ALR: critic's training σ × test σ (i.i.d. denoising)",
            text=(
                "MPSNR of the restoration with each critic (Adam on x, λ tuned on val) per test "
                f"noise level, with its {pct} t-interval over test images, beside BM3D/BM4D "
                f"given the true σ (oracle-informed) and {baseline}. Variant s<σ>: a critic "
                "trained at that single σ; varying: trained on σ ~ U[0.05, 0.30]."
            ),
            table=matrix,
            columns={
                "row": "Critic / restorer",
                "sigma_test": "Test σ",
                "mpsnr_mean": "MPSNR ↑ (dB)",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "n": "n",
            },
            digits={"sigma_test": 3, "mpsnr_mean": 2, "ci_low": 2, "ci_high": 2, "n": 0},
        ),
        Section(
            name="alr-vs-bm",
            title="ALR against BM3D/BM4D per noise level",
            text=(
                f"Paired MPSNR difference of each critic's restoration minus the better of "
                f"BM3D/BM4D at each test σ ({pct} t-interval over test images)."
            ),
            table=versus_peer_frame(per, variants, confidence),
            columns={"sigma_test": "Test σ", "comparison": "Comparison", **PAIRED_COLUMNS},
            digits={"sigma_test": 3, **PAIRED_DIGITS},
        ),
        Section(
            name="alr-claim",
            title="ALR: does the varying-σ critic generalise best at high σ?",
            text=claim_sentence(claim),
            table=claim,
            columns={"sigma_test": "Test σ", "comparison": "Comparison", **PAIRED_COLUMNS},
            digits={"sigma_test": 3, **PAIRED_DIGITS},
        ),
    ]
