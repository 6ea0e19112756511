"""Markdown tables of the transfer study from ``reports/results.parquet`` (for notes and the
README; the leaderboard page has the same numbers with intervals and tests).

    .venv/bin/python scripts/transfer_tables.py [--results reports/results.parquet]

1. Per case: mean test MPSNR of every target under ``unweighted``, ``handcrafted``, ``oracle``
   and the best DLW source set of that (target, case) (seeds averaged per image first).
2. Weight-map quality: mean AUC of −w for the corrupted pixels and correlation with the oracle,
   per weighting and case.
3. Transfer: mean MPSNR gain over ``unweighted`` (dB, over cases and images) per source set ×
   target, with the handcrafted and oracle rows for scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def per_image(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["weighting", "weighting_kind", "source_set", "target", "case", "image_id"]
    cols = ["mpsnr", "weight_auc", "oracle_corr"]
    return df.groupby(keys, as_index=False)[cols].mean()


def table_by_case(img: pd.DataFrame, baselines: pd.DataFrame) -> str:
    lines = []
    targets = sorted(img.target.unique())
    for case in sorted(img.case.unique()):
        c = img[img.case == case]
        lines.append(
            f"\n**{case}** (noisy {baselines.loc[case, 'noisy']:.2f} dB"
            + "".join(
                f", {m} {baselines.loc[case, m]:.2f}" for m in baselines.columns if m != "noisy"
            )
            + ")\n"
        )
        lines.append("| weighting | " + " | ".join(targets) + " |")
        lines.append("|---" * (len(targets) + 1) + "|")
        for kind in ("unweighted", "handcrafted", "oracle"):
            row = c[c.weighting == kind].groupby("target").mpsnr.mean()
            lines.append(
                f"| {kind} | "
                + " | ".join(f"{row.get(t, float('nan')):.2f}" for t in targets)
                + " |"
            )
        cells = []
        for t in targets:
            d = c[(c.target == t) & (c.weighting_kind == "dlw")]
            if d.empty:
                cells.append("-")
                continue
            best = d.groupby("source_set").mpsnr.mean()
            cells.append(f"{best.max():.2f} ({best.idxmax()})")
        lines.append("| best DLW (set) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auc_table(img: pd.DataFrame) -> str:
    w = img[img.target == img.target.iloc[0]]  # maps do not depend on the target
    auc = w.pivot_table(index="weighting", columns="case", values="weight_auc", aggfunc="mean")
    corr = w.groupby("weighting").oracle_corr.mean()
    lines = [
        "| weighting | " + " | ".join(f"AUC {c}" for c in auc.columns) + " | corr. oracle |",
        "|---" * (len(auc.columns) + 2) + "|",
    ]
    for name, row in auc.iterrows():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{v:.3f}" for v in row)
            + f" | {corr.get(name, float('nan')):.3f} |"
        )
    return "\n".join(lines)


def transfer_table(img: pd.DataFrame) -> str:
    base = img[img.weighting == "unweighted"].set_index(["target", "case", "image_id"]).mpsnr
    d = img[img.weighting != "unweighted"].copy()
    d["gain"] = (
        d.mpsnr.values - base.loc[list(zip(d.target, d.case, d.image_id, strict=True))].values
    )
    table = d.pivot_table(index="weighting", columns="target", values="gain", aggfunc="mean")
    targets = list(table.columns)
    lines = [
        "| weighting | " + " | ".join(targets) + " | mean |",
        "|---" * (len(targets) + 2) + "|",
    ]
    for name, row in table.iterrows():
        lines.append(
            f"| {name} | " + " | ".join(f"{v:+.2f}" for v in row) + f" | {row.mean():+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "reports/results.parquet")
    args = ap.parse_args()
    df = pd.read_parquet(args.results)
    weighted = df[df.method == "dlw"]
    others = df[df.method != "dlw"]
    baselines = others.pivot_table(index="case", columns="method", values="mpsnr", aggfunc="mean")
    baselines.insert(0, "noisy", df.groupby("case").noisy_mpsnr.mean())
    img = per_image(weighted)
    n = df.image_id.nunique()
    synthetic = " (SYNTHETIC cubes)" if df.synthetic.any() else ""
    print(f"Test MPSNR (dB), mean over {n} test images{synthetic}; strengths tuned on val.")
    print(table_by_case(img, baselines))
    print("\nWeight maps: AUC of −w for the corrupted pixels, correlation with the oracle map.\n")
    print(auc_table(img))
    print("\nTransfer: MPSNR gain over unweighted (dB), mean over cases and test images.\n")
    print(transfer_table(img))


if __name__ == "__main__":
    main()
