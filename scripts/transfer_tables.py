"""Markdown tables of the transfer study from ``reports/results.parquet`` (for notes and the
README; the leaderboard page has the same numbers with intervals and tests).

    .venv/bin/python scripts/transfer_tables.py [--results reports/results.parquet]
        [--reference unweighted] [--restorers e3dtv lrtv nn tv tvs]

Only the label columns say what a row is (no method is named here): weighting ``none`` marks a
restorer that takes no weighting (peer baselines, learned restorers without a weight input), a
non-empty ``weighting_method`` a learned weighting ``<method>:<variant>``.

1. Per case: mean test MPSNR of every restorer that takes a weighting under each built-in
   weighting (``unweighted``, ``handcrafted``, ``oracle``) and the best variant of each method
   providing weightings for that (restorer, case) (seeds averaged per image first); the
   restorers without weighting in the case's heading.
2. Weight-map quality: mean AUC of −w for the corrupted pixels and correlation with the oracle,
   per weighting and case.
3. Transfer: mean MPSNR gain over the reference weighting (dB, over cases and images) per
   weighting × restorer, one table per task (denoising, and each forward operator).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NO_WEIGHTING = "none"
BUILTIN_ORDER = {"unweighted": 0, "handcrafted": 1, "oracle": 2}


def per_image(df: pd.DataFrame) -> pd.DataFrame:
    """Seeds (distinct weighting and restorer seed pairs) averaged per image."""
    keys = ["weighting", "weighting_method", "weighting_variant", "restorer", "case", "image_id"]
    cols = ["mpsnr", "weight_auc", "oracle_corr"]
    return df.groupby(keys, as_index=False)[cols].mean()


def table_by_case(img: pd.DataFrame, plain: pd.DataFrame) -> str:
    lines = []
    builtin = img.loc[img.weighting_method == "", "weighting"].unique()
    builtin = sorted(builtin, key=lambda w: (BUILTIN_ORDER.get(w, 3), w))
    methods = sorted(m for m in img.weighting_method.unique() if m)
    for case in sorted(img.case.unique()):
        c = img[img.case == case]
        restorers = sorted(c.restorer.unique())  # a task's case runs the restorers taking A
        lines.append(
            f"\n**{case}** (degraded {plain.loc[case, 'noisy']:.2f} dB"
            + "".join(
                f", {r} {plain.loc[case, r]:.2f}"
                for r in plain.columns
                if r != "noisy" and pd.notna(plain.loc[case, r])
            )
            + ")\n"
        )
        lines.append("| weighting | " + " | ".join(restorers) + " |")
        lines.append("|---" * (len(restorers) + 1) + "|")
        for w in builtin:
            row = c[c.weighting == w].groupby("restorer").mpsnr.mean()
            lines.append(
                f"| {w} | "
                + " | ".join(f"{row.get(t, float('nan')):.2f}" for t in restorers)
                + " |"
            )
        for method in methods:
            cells = []
            for t in restorers:
                d = c[(c.restorer == t) & (c.weighting_method == method)]
                if d.empty:
                    cells.append("-")
                    continue
                best = d.groupby("weighting_variant").mpsnr.mean()
                cells.append(f"{best.max():.2f} ({best.idxmax()})")
            lines.append(f"| best {method} (variant) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auc_table(img: pd.DataFrame) -> str:
    w = img[img.restorer == img.restorer.iloc[0]]  # maps do not depend on the restorer
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


def transfer_table(img: pd.DataFrame, reference: str) -> str:
    base = img[img.weighting == reference].set_index(["restorer", "case", "image_id"]).mpsnr
    d = img[img.weighting != reference].copy()
    # Only images whose restorer and case were also run with the reference are paired.
    keys = pd.MultiIndex.from_arrays([d.restorer, d.case, d.image_id])
    d["gain"] = d.mpsnr.to_numpy() - base.reindex(keys).to_numpy()
    table = d.pivot_table(index="weighting", columns="restorer", values="gain", aggfunc="mean")
    restorers = list(table.columns)
    lines = [
        "| weighting | " + " | ".join(restorers) + " | mean |",
        "|---" * (len(restorers) + 2) + "|",
    ]
    for name, row in table.iterrows():
        lines.append(
            f"| {name} | " + " | ".join(f"{v:+.2f}" for v in row) + f" | {row.mean():+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "reports/results.parquet")
    ap.add_argument("--reference", default="unweighted", help="weighting the gains compare with")
    ap.add_argument(
        "--restorers", nargs="+", help="the weighted restorers to tabulate (default: all)"
    )
    args = ap.parse_args()
    df = pd.read_parquet(args.results)
    weighted = df[df.weighting != NO_WEIGHTING]
    if args.restorers:
        unknown = sorted(set(args.restorers) - set(weighted.restorer))
        if unknown:
            raise SystemExit(f"--restorers: {unknown} not among {sorted(set(weighted.restorer))}")
        weighted = weighted[weighted.restorer.isin(args.restorers)]
    others = df[df.weighting == NO_WEIGHTING]
    plain = others.pivot_table(index="case", columns="restorer", values="mpsnr", aggfunc="mean")
    plain = plain.reindex(sorted(df.case.unique()))
    plain.insert(0, "noisy", df.groupby("case").noisy_mpsnr.mean())
    img = per_image(weighted)
    n = df.image_id.nunique()
    synthetic = " (SYNTHETIC cubes)" if df.synthetic.any() else ""
    print(f"Test MPSNR (dB), mean over {n} test images{synthetic}; strengths tuned on val.")
    edge = weighted[weighted.strength_on_edge]
    cells = edge.groupby(["restorer", "weighting", "case"]).strength.first()
    print(
        f"{len(edge)} of the {len(weighted)} weighted test rows ({len(cells)} cells) stay at the "
        "strength search's limit: "
        + "; ".join(f"{r} under {w} on {c} (×{m:g})" for (r, w, c), m in cells.items())
    )
    print(table_by_case(img, plain))
    print("\nWeight maps: AUC of −w for the corrupted pixels, correlation with the oracle map.\n")
    print(auc_table(img))
    task = df.groupby("case")["task"].first() if "task" in df else None
    for name in [None] if task is None else list(dict.fromkeys(task.reindex(img.case))):
        part = img if task is None else img[img.case.map(task) == name]
        what = "" if name is None else f"task {name}, "
        print(f"\nTransfer: MPSNR gain over {args.reference} (dB), {what}mean over its cases and "
              "test images.\n")  # fmt: skip
        print(transfer_table(part, args.reference))


if __name__ == "__main__":
    main()
