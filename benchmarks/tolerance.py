"""What a looser stopping tolerance costs the targets: iterations, time and MPSNR per tolerance.

    .venv/bin/python benchmarks/tolerance.py [--case mixture] [--images 2]

For each target (``tv``, ``tvs``, ``lrtv`` at tol 1e-5 / 1e-4 / 1e-3; ``e3dtv`` at 3e-3 / 1e-2 /
3e-2; ``nn`` at 1e-5 / 1e-3) on the first test images of a case (the pipeline's own
``data/degraded``, so run ``dvc repro degrade`` first), with w = 1 and the oracle weights,
reference strengths, Neumann boundaries, ``solve(y, w, converge=True)`` in float64 and in
float32, one torch thread. Prints a table (largest MPSNR difference to the tightest tolerance in
float64, mean iterations and seconds, iteration ratio to the reference) and writes
``benchmarks/results/tolerance.json``. This is what chose the default profile's
``evaluate.targets`` tolerances.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCES = {
    "tv": (1e-5, 1e-4, 1e-3),
    "tvs": (1e-5, 1e-4, 1e-3),
    "nn": (1e-5, 1e-3),
    "lrtv": (1e-5, 1e-4, 1e-3),
    "e3dtv": (3e-3, 1e-2, 3e-2),
}


def main() -> None:
    import pandas as pd
    import torch

    from pipeline.evaluate.metrics import mpsnr
    from pipeline.evaluate.weightings import compute_weights
    from pipeline.io import load_npy, load_npz, write_json
    from pipeline.models import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="mixture")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tolerance.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    rows = manifest[(manifest.split == "test") & (manifest.case == args.case)]
    rows = rows.sort_values("image_id").head(args.images)
    if rows.empty:
        sys.exit(f"no test images of case {args.case!r} in data/degraded; run dvc repro degrade")
    records = []
    for row in rows.itertuples():
        a = load_npz(ROOT / row.path, ("noisy", "sigma", "mask"))
        clean = load_npy(ROOT / row.clean_path)
        oracle = compute_weights("oracle", a["noisy"], sigma=a["sigma"], mask=a["mask"])
        y = torch.from_numpy(a["noisy"])[None]
        for weighting, w in (("unweighted", None), ("oracle", torch.from_numpy(oracle)[None])):
            for target, tols in TOLERANCES.items():
                extra = {"boundary": "neumann"} if target in ("tv", "tvs") else {}
                for tol, precision in itertools.product(tols, ("float64", "float32")):
                    model = build_model(target, tol=tol, **extra)
                    model.converge_dtype = getattr(torch, precision)
                    start = time.perf_counter()
                    with torch.no_grad():
                        sol = model.solve(y, w, converge=True)
                    records.append(
                        {
                            "image_id": row.image_id,
                            "weighting": weighting,
                            "target": target,
                            "tol": tol,
                            "precision": precision,
                            "iterations": int(sol.iterations),
                            "converged": bool(sol.converged.all()),
                            "seconds": time.perf_counter() - start,
                            "mpsnr": mpsnr(clean, sol.x[0].numpy()),
                        }
                    )
    df = pd.DataFrame(records)
    tight = df.groupby(["image_id", "weighting", "target"]).tol.transform("min")
    ref = df[(df.tol == tight) & (df.precision == "float64")]
    ref = ref.set_index(["image_id", "weighting", "target"])
    key = ["image_id", "weighting", "target"]
    df["d_mpsnr"] = df.mpsnr.values - ref.loc[list(df[key].itertuples(index=False))].mpsnr.values
    df["its_ratio"] = (
        ref.loc[list(df[key].itertuples(index=False))].iterations.values / df.iterations
    )
    summary = (
        df.groupby(["target", "tol", "precision"])
        .agg(
            max_abs_d_mpsnr=("d_mpsnr", lambda v: float(np.abs(v).max())),
            mean_iterations=("iterations", "mean"),
            mean_seconds=("seconds", "mean"),
            speedup_vs_tightest=("its_ratio", "mean"),
            converged=("converged", "mean"),
        )
        .reset_index()
    )
    print(f"case {args.case}, {len(rows)} test images × (w = 1, oracle); 1 thread")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    write_json(
        args.out,
        {
            "case": args.case,
            "records": records,
            "summary": json.loads(summary.to_json(orient="records")),
        },
    )


if __name__ == "__main__":
    main()
