"""``evaluate.net_precision``: the learned parts' maps and restorations in fp32 and bf16.

Usage: ``python benchmarks/net_precision.py [--threads 1] [--cases noniid blur-g1.6/noniid]``
(after ``dvc repro``: it reads the trained parts in ``models/`` and the degraded test images);
prints a table and writes ``benchmarks/results/net_precision.json``.

For every trained variant (seed 0) of every method and every test image of the cases it
takes: the weight map (a method that gives one) and the restoration (a method that restores,
at its trained strength, weighting ``none``), each computed with the nets at fp32 and at bf16,
interleaved; the median time per image of each, the largest relative difference of the maps,
and the test MPSNR of both restorations (mean over the images, and the largest difference).
One thread: what an evaluate task gets (``evaluate.cpu: 1``). The data are the pipeline's
SYNTHETIC cubes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(cls, what: str, net, item):
    """One weight map or one restoration (trained strength, no weighting), as evaluate calls
    them (a restorer may use autograd inside, as ALR's does)."""
    if what == "weights":
        return cls.weights(net, item["noisy"])
    return cls.restore(net, item["noisy"], None, 1.0, A=item["A"])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", nargs="+", default=["noniid", "blur-g1.6/noniid"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/net_precision.json")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    from pipeline.degrade.operators import operator_kind
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.evaluate.transfer import load_items
    from pipeline.methods.base import find_parts
    from pipeline.methods.precision import native_bf16, set_precision
    from pipeline.methods.registry import METHODS

    torch.set_num_threads(args.threads)
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    items, meta = load_items(ROOT, manifest, args.cases)
    test = [(m["case"], items[m["key"]]) for m in meta if m["split"] == "test"]

    rows = []
    for name, cls in METHODS.items():
        for part in [p for p in find_parts(ROOT, name) if p.seed == 0]:
            nets = {p: set_precision(cls.load(ROOT / part.path), p) for p in ("fp32", "bf16")}
            for case in args.cases:
                cubes = [it for c, it in test if c == case]
                kind = operator_kind(cubes[0]["A"])
                jobs = []
                if cls.provides_weighting_for(part.variant):
                    jobs.append("weights")
                if cls.restorer_role is not None and kind in cls.restorer_operators:
                    jobs.append("restore")
                for what in jobs:
                    times = {"fp32": [], "bf16": []}
                    out = {"fp32": [], "bf16": []}
                    for it in cubes:
                        for rnd in range(2):  # a warm-up round, then the timed one
                            for p in ("fp32", "bf16"):
                                t = time.perf_counter()
                                res = _run(cls, what, nets[p], it)
                                if rnd:
                                    times[p].append(time.perf_counter() - t)
                                    out[p].append(np.asarray(res))
                    row = {
                        "method": name,
                        "part": part.label,
                        "case": case,
                        "what": what,
                        "images": len(cubes),
                        "fp32_s": statistics.median(times["fp32"]),
                        "bf16_s": statistics.median(times["bf16"]),
                    }
                    row["speedup_bf16"] = row["fp32_s"] / row["bf16_s"]
                    a, b = out["fp32"], out["bf16"]
                    if what == "weights":
                        rel = [
                            np.abs(x - y).max() / np.abs(x).max() for x, y in zip(a, b, strict=True)
                        ]
                        row["max_rel_diff"] = float(max(rel))
                    else:
                        pa = [mpsnr(x, it["clean"]) for x, it in zip(a, cubes, strict=True)]
                        pb = [mpsnr(x, it["clean"]) for x, it in zip(b, cubes, strict=True)]
                        row["mpsnr_fp32"] = float(np.mean(pa))
                        row["mpsnr_bf16"] = float(np.mean(pb))
                        row["max_abs_mpsnr_diff"] = max(
                            abs(x - y) for x, y in zip(pa, pb, strict=True)
                        )
                    rows.append(row)
                    extra = (
                        f"maps differ ≤ {row['max_rel_diff']:.1e} (relative)"
                        if what == "weights"
                        else f"MPSNR {row['mpsnr_fp32']:.2f} / {row['mpsnr_bf16']:.2f} dB, "
                        f"|Δ| ≤ {row['max_abs_mpsnr_diff']:.3f}"
                    )
                    print(
                        f"{part.label:24s} {case:18s} {what:8s} fp32 {row['fp32_s']:.3f} s  "
                        f"bf16 {row['bf16_s']:.3f} s  ×{row['speedup_bf16']:.2f}  {extra}",
                        flush=True,
                    )
    result = {
        "threads": args.threads,
        "native_bf16": native_bf16("cpu"),
        "torch": torch.__version__,
        "note": "SYNTHETIC test cubes; n = images per row; seed-0 part of each method",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
