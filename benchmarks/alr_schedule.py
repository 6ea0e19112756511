"""Which Adam schedule the ALR denoising restoration needs: the step budget bounds how far x can
move from y, and at high σ the paper's 70 × (0.01 → 0.001) cannot reach the clean image.

    .venv/bin/python benchmarks/alr_schedule.py [--variant varying] [--images 2]

For each schedule (iterations, first lr, last lr) and each i.i.d. test case of the default
(σ = 0.05 and 0.4), restores the first ``--images`` test images with the trained
``models/alr/<variant>/seed-0.pt`` at strengths ×0.25 … ×256 of its calibrated λ and prints the
best mean MPSNR, its strength and the seconds per cube (one torch thread). Run ``dvc repro
train@alr degrade`` first. Writes ``benchmarks/results/alr_schedule.json``. The schedule of
``train.alr`` (``iterations``, ``restore_lr``) comes from this table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCHEDULES = [(20, 0.03, 0.003), (30, 0.05, 0.005), (70, 0.01, 0.001), (30, 0.1, 0.01),
             (50, 0.1, 0.01)]  # fmt: skip
STRENGTHS = [0.25, 1.0, 4.0, 16.0, 64.0, 256.0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="varying")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--cases", nargs="+", default=["iid-12.75", "iid-102"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/alr_schedule.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch

    from pipeline.evaluate.metrics import mpsnr
    from pipeline.evaluate.transfer import load_items
    from pipeline.methods.alr import ALR

    torch.set_num_threads(1)
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    items, meta = load_items(ROOT, manifest, args.cases)
    part = ALR.load(ROOT / f"models/alr/{args.variant}/seed-0.pt")
    rows = []
    print(f"alr:{args.variant}, first {args.images} test images per case, best strength of "
          f"{STRENGTHS}")  # fmt: skip
    print("| iterations | lr | case | best MPSNR (dB) | strength | s / cube |")
    print("|---|---|---|---|---|---|")
    for iterations, lr0, lr1 in SCHEDULES:
        part.schedule = lambda operator=False, s=(iterations, lr0, lr1): s
        for case in args.cases:
            keys = [m["key"] for m in meta if m["split"] == "test" and m["case"] == case]
            keys = keys[: args.images]
            best = None
            for strength in STRENGTHS:
                t = time.perf_counter()
                restored = [ALR.restore(part, items[k]["noisy"], None, strength)[0] for k in keys]
                scores = [mpsnr(items[k]["clean"], x) for k, x in zip(keys, restored, strict=True)]
                seconds = (time.perf_counter() - t) / len(keys)
                if best is None or np.mean(scores) > best["mpsnr"]:
                    best = {"mpsnr": float(np.mean(scores)), "strength": strength,
                            "seconds": seconds}  # fmt: skip
            noisy = float(np.mean([mpsnr(items[k]["clean"], items[k]["noisy"]) for k in keys]))
            rows.append({"iterations": iterations, "lr": [lr0, lr1], "case": case,
                         "noisy_mpsnr": noisy, **best})  # fmt: skip
            print(
                f"| {iterations} | {lr0:g} → {lr1:g} | {case} | {best['mpsnr']:.2f} "
                f"(noisy {noisy:.2f}) | ×{best['strength']:g} | {best['seconds']:.2f} |"
            )
    out = {"variant": args.variant, "images": args.images, "rows": rows,
           "synthetic": True}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
