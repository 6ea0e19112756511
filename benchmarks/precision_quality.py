"""The quality cost of a training setting: two runs of the default study, side by side.

Usage::

    python benchmarks/precision_quality.py A.parquet B.parquet [--labels fp32 bf16]
        [--method dlw]

``A`` and ``B`` are ``reports/results.parquet`` of two ``dvc repro`` runs that differ in one
training setting of one method (e.g. ``train.dlw.precision: fp32`` and ``bf16``, copied after
each run). Prints, for that method's weightings (``<method>:<variant>``):

1. the denoising transfer table of both runs side by side: mean test MPSNR gain over
   ``unweighted`` (dB, over the denoising cases and test images) per weighting × restorer;
2. how far the test MPSNR of each (case, weighting, restorer, image) moved between the runs:
   median, 90th percentile and maximum of |Δ| per image and per cell (the mean over images);
   with and without each single weighting, so one unstable variant does not hide the rest;
3. whether the rows every other label carries are unchanged (they must be: only the method's
   parts differ).

Writes ``benchmarks/results/precision_quality.json``. The README quotes it next to the stated
cross-machine tolerance (``benchmarks/reproducibility.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = ["task", "case", "image_id", "weighting", "restorer"]


def denoise_gains(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Weighting × restorer: mean MPSNR gain over ``unweighted`` on the denoising task."""
    d = df[df.task == "denoise"]
    img = d.groupby(KEYS, as_index=False).mpsnr.mean()
    ref = img[img.weighting == "unweighted"].drop(columns="weighting")
    own = img[img.weighting.str.startswith(f"{method}:")]
    m = own.merge(ref, on=["task", "case", "image_id", "restorer"], suffixes=("", "_ref"))
    m["gain"] = m.mpsnr - m.mpsnr_ref
    return m.pivot_table(index="weighting", columns="restorer", values="gain", aggfunc="mean")


def spread(d: pd.Series) -> dict:
    a = d.abs()
    return {"median": float(a.median()), "p90": float(a.quantile(0.9)), "max": float(a.max())}


def moved(a: pd.DataFrame, b: pd.DataFrame, method: str, exclude: str | None = None) -> dict:
    m = a[[*KEYS, "mpsnr"]].merge(b[[*KEYS, "mpsnr"]], on=KEYS, suffixes=("_a", "_b"))
    m = m[m.weighting.str.startswith(f"{method}:")]
    if exclude is not None:
        m = m[m.weighting != exclude]
    m["d"] = m.mpsnr_b - m.mpsnr_a
    cells = m.groupby(["case", "weighting", "restorer"]).d.mean()
    return {
        "images": len(m),
        "cells": len(cells),
        "per_image": spread(m.d),
        "per_cell": spread(cells),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--labels", nargs=2, default=["A", "B"])
    ap.add_argument("--method", default="dlw")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision_quality.json"
    )
    args = ap.parse_args()
    la, lb = args.labels
    a, b = pd.read_parquet(args.a), pd.read_parquet(args.b)

    ga, gb = denoise_gains(a, args.method), denoise_gains(b, args.method)
    cols = [c for c in ga.columns if c in gb.columns and ga[c].notna().all()]
    print(f"Denoising transfer, MPSNR gain over unweighted (dB), {la} / {lb}:\n")
    print("| weighting | " + " | ".join(cols) + " | mean |")
    print("|---" * (len(cols) + 2) + "|")
    for w in ga.index:
        cells = [f"{ga.at[w, c]:+.2f} / {gb.at[w, c]:+.2f}" for c in cols]
        mean = f"{ga.loc[w, cols].mean():+.2f} / {gb.loc[w, cols].mean():+.2f}"
        print(f"| {w} | " + " | ".join(cells) + f" | {mean} |")

    report = {"labels": [la, lb], "method": args.method, "all": moved(a, b, args.method)}
    for w in sorted(ga.index):
        report[f"without {w}"] = moved(a, b, args.method, exclude=w)
    print(f"\n|Δ test MPSNR| between {la} and {lb}, {args.method} weightings (dB):\n")
    print("| rows | n images | per image median / p90 / max | n cells | per cell ditto |")
    print("|---|---|---|---|---|")
    for name, r in report.items():
        if not isinstance(r, dict) or "per_image" not in r:
            continue
        pi, pc = r["per_image"], r["per_cell"]
        print(
            f"| {name} | {r['images']} | {pi['median']:.3f} / {pi['p90']:.3f} / {pi['max']:.3f} "
            f"| {r['cells']} | {pc['median']:.3f} / {pc['p90']:.3f} / {pc['max']:.3f} |"
        )
    m = a[[*KEYS, "mpsnr"]].merge(b[[*KEYS, "mpsnr"]], on=KEYS, suffixes=("_a", "_b"))
    others = m[~m.weighting.str.startswith(f"{args.method}:")]
    diff = float((others.mpsnr_b - others.mpsnr_a).abs().max()) if len(others) else 0.0
    report["other_rows"] = {"n": len(others), "max_abs_difference": diff}
    print(f"\nrows of every other weighting: {len(others)}, largest |Δ| {diff:.3g} dB")
    report["denoise_gains"] = {la: ga.round(4).to_dict(), lb: gb.round(4).to_dict()}

    from pipeline.io import write_bytes

    out = args.out.resolve()
    write_bytes(out, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
