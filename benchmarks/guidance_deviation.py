"""The deviation experiment of proxy-based hyper-guidance (Gao et al. 2023): restorers that must be
*told* the noise level, told a wrong one, against the guidance net that estimates its own.

    .venv/bin/python benchmarks/guidance_deviation.py [--case blur-g1.6/iid-7.65]
                                                      [--told 1 2 3 4 5]

On every test image of ``--case`` (true σ = 3 % on the default's Gaussian-blur case; run ``dvc
repro evaluate`` first: it needs ``models/guidance``, ``data/degraded`` and
``reports/results.parquet``), each told level σ_t (in % of the range) is given to

* ``wiener``: Wiener deconvolution with σ_t (the white-signal prior of
  :mod:`pipeline.evaluate.operator_baselines`);
* ``tv``: TV deblurring (params.yaml's ``evaluate.restorers.tv``) at the strength chosen on val
  for the true case, rescaled by (σ_t / σ)² — the MAP strength of a Gaussian fidelity scales with
  the noise variance;
* ``guidance:<variant>`` (every guided variant): ``A_ω`` fed the constant map σ_t instead of σ̂;

beside the rows that are told nothing: ``guidance:<variant>`` with its own σ̂, and the
unguided net. The paper's finding: the told baselines fall off on either side of the true level,
the σ̂-guided net stays flat. Prints the mean test MPSNR with a t-interval over the test images
(the image is the unit, n stated) and writes ``benchmarks/results/guidance_deviation.json``.
One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="blur-g1.6/iid-7.65")
    ap.add_argument("--told", type=float, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/guidance_deviation.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch

    from pipeline.config import load_params
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.evaluate.operator_baselines import operator_baseline
    from pipeline.evaluate.restorers import plan_restorers
    from pipeline.evaluate.transfer import load_items
    from pipeline.methods.base import find_parts
    from pipeline.methods.guidance import Guidance
    from pipeline.report.stats import t_interval

    torch.set_num_threads(1)
    params = load_params(ROOT / "params.yaml")
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    items, meta = load_items(ROOT, manifest, [args.case])
    test = [m["key"] for m in meta if m["split"] == "test"]
    sigma = {float(np.unique(items[k]["sigma"]).squeeze()) for k in test}
    if len(sigma) != 1:
        print(f"{args.case}: not an i.i.d. case (σ varies); the deviation needs one true level")
        return 1
    true_percent = 100 * sigma.pop()
    results = pd.read_parquet(ROOT / "reports/results.parquet")
    at = (results.case == args.case) & (results.split == "test")
    tv_rows = results[at & (results.restorer == "tv") & (results.weighting == "unweighted")]
    if tv_rows.empty:
        print(f"reports/results.parquet: no tv/unweighted rows on {args.case}; run evaluate")
        return 1
    tv_multiplier = float(tv_rows.strength.iloc[0])
    (tv,) = [r for r in plan_restorers(params.evaluate, ROOT) if r.label == "tv"]
    parts = {p.label: Guidance.load(ROOT / p.path) for p in find_parts(ROOT, "guidance")}

    def score(restore) -> list[float]:
        return [mpsnr(items[k]["clean"], restore(items[k])) for k in test]

    rows: dict[str, dict[str, list[float]]] = {}
    for told in args.told:
        s = told / 100.0
        col = f"{told:g}"
        rows.setdefault("wiener (told σ)", {})[col] = score(
            lambda it, s=s: operator_baseline("wiener", it["noisy"], it["A"], np.float32(s))
        )
        m = tv_multiplier * (told / true_percent) ** 2
        rows.setdefault("tv (strength from told σ)", {})[col] = score(
            lambda it, m=m: tv.restore(it, None, m, "float32")[0]
        )
        for label, part in parts.items():
            if part.guided:
                rows.setdefault(f"{label} (told σ)", {})[col] = score(
                    lambda it, p=part, s=s: Guidance.restore_with_sigma(p, it["noisy"], it["A"], s)[
                        0
                    ]
                )
    for label, part in parts.items():
        own = score(lambda it, p=part: Guidance.restore(p, it["noisy"], None, 1.0, A=it["A"])[0])
        name = f"{label} (own σ̂)" if part.guided else f"{label} (no σ input)"
        rows[name] = {f"{t:g}": own for t in args.told}

    # Paired against the σ̂-guided reference row (the image is the unit): the wide spread of
    # scores between images cancels.
    guided = [n for n in rows if n.endswith("(own σ̂)")]
    anchor = rows[guided[0]] if guided else None
    table, paired = {}, {}
    for name, cols in rows.items():
        if anchor is not None:
            paired[name] = {}
            for col, values in cols.items():
                d = t_interval(np.subtract(values, anchor[col]), args.confidence)
                paired[name][col] = {"mean": d.mean, "low": d.low, "high": d.high, "n": d.n}
        table[name] = {}
        for col, values in cols.items():
            ci = t_interval(values, args.confidence)
            table[name][col] = {"mean": ci.mean, "low": ci.low, "high": ci.high, "n": ci.n}
        means = [v["mean"] for v in table[name].values()]
        table[name]["spread"] = max(means) - min(means)

    print(f"case {args.case}: true σ = {true_percent:.2f} %, n = {len(test)} test images, "
          f"mean test MPSNR (dB) with {args.confidence:.0%} t-intervals")  # fmt: skip
    head = " | ".join(f"told {t:g} %" for t in args.told)
    print(f"| restorer | {head} | spread |")
    print("|---" * (len(args.told) + 2) + "|")
    for name, cols in table.items():
        cells = " | ".join(
            f"{cols[f'{t:g}']['mean']:.2f} [{cols[f'{t:g}']['low']:.2f}, "
            f"{cols[f'{t:g}']['high']:.2f}]"
            for t in args.told
        )
        print(f"| {name} | {cells} | {cols['spread']:.2f} |")
    if anchor is not None:
        print(f"\npaired difference from {guided[0]} (dB), {args.confidence:.0%} t-intervals")
        print(f"| restorer | {head} |")
        print("|---" * (len(args.told) + 1) + "|")
        for name, cols in paired.items():
            cells = " | ".join(
                f"{cols[f'{t:g}']['mean']:+.2f} [{cols[f'{t:g}']['low']:+.2f}, "
                f"{cols[f'{t:g}']['high']:+.2f}]"
                for t in args.told
            )
            print(f"| {name} | {cells} |")
    out = {
        "paired_reference": guided[0] if guided else None,
        "paired": paired,
        "case": args.case,
        "true_percent": true_percent,
        "told_percent": args.told,
        "n_images": len(test),
        "confidence": args.confidence,
        "tv_multiplier_at_true": tv_multiplier,
        "table": table,
        "synthetic": bool(results.synthetic.any()),
    }
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
