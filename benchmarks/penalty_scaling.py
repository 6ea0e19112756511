"""What scaling the ADMM penalties with the strength (√m) buys: iterations, time, objective.

    .venv/bin/python benchmarks/penalty_scaling.py [--models tv,tvs,tv_l1,lrtv,e3dtv]

For each model, on the val cube of every denoising case of ``data/degraded`` (run ``dvc repro
degrade`` first) with w = 1 and the oracle weights, at ×1/16, ×1/4 and ×4 the reference strength,
the converged solve (float32, the default profile's tolerances and boundaries) runs twice: with
the reference penalties, and with the model's ``penalty_fields`` × √m (what
``pipeline.models.strength.scaled_params`` does). TV also runs on the val cube of each task with
an operator (circular blur, ×2 down-sampling, inpainting) at ×1/16 and ×1/4, with the default
profile's periodic boundary for blur and down-sampling. One torch thread. Prints, per model,
total iterations and seconds, solves at the iteration cap, the largest relative objective change
(negative: the scaled penalties reached a lower objective) and the largest MPSNR change; writes
``benchmarks/results/penalty_scaling.json``. E3DTV is measured but has no ``penalty_fields``:
this table is why.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {
    "tv": {"boundary": "neumann", "tol": 1e-3},
    "tvs": {"boundary": "neumann", "tol": 1e-3},
    "tv_l1": {"tol": 1e-3},
    "lrtv": {"tol": 1e-3},
    "e3dtv": {"tol": 1e-2},
}
PENALTIES = {"tv": ("mu1", "mu2", "mu_max"), "tvs": ("mu1", "mu2", "mu_max"),
             "tv_l1": ("mu1", "mu2", "mu_max"), "lrtv": ("mu0", "mu_max"),
             "e3dtv": ("mu0", "mu_max")}  # fmt: skip
MULTIPLIERS = (1 / 16, 1 / 4, 4.0)
TASK_MULTIPLIERS = (1 / 16, 1 / 4)


def solve(name, settings, m, scaled, y, w, A):
    import torch

    from pipeline.models import MODELS, build_model
    from pipeline.models.strength import strength_fields

    fields, inverse = strength_fields(name)
    default = MODELS[name][1]()
    params = dict(settings)
    for f in fields:
        params[f] = getattr(default, f) / m if inverse else getattr(default, f) * m
    for f in PENALTIES[name]:
        params[f] = getattr(default, f) * (math.sqrt(m) if scaled else 1.0)
    model = build_model(name, **params)
    model.converge_dtype = torch.float32
    start = time.perf_counter()
    with torch.no_grad():
        sol = model.solve(y, w, converge=True, A=A)
    seconds = time.perf_counter() - start
    objective = float(model.objective(sol.x.double(), y.double(), w if w is None else w.double(),
                                      A=A))  # fmt: skip
    return sol, seconds, objective


def main() -> None:
    import numpy as np
    import pandas as pd
    import torch

    from pipeline.degrade.tasks import load_degraded
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.evaluate.weightings import oracle_weights
    from pipeline.io import load_npy, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SETTINGS))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/penalty_scaling.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    val = manifest[manifest.split == "val"].sort_values(["case", "image_id"])
    val = val.groupby("case", sort=True).head(1)
    if val.empty:
        sys.exit("no val images in data/degraded; run dvc repro degrade")
    task = val.get("task", pd.Series("denoise", index=val.index))
    records = []
    for name in args.models.split(","):
        for row, t in zip(val.itertuples(), task, strict=True):
            if t != "denoise" and name != "tv":
                continue
            arrays, A = load_degraded(ROOT / row.path)
            clean = load_npy(ROOT / row.clean_path).astype(np.float64)
            settings = dict(SETTINGS[name])
            if t != "denoise" and row.operator in ("blur", "downsample"):
                settings["boundary"] = "periodic"  # the default profile's per_operator
            y = torch.from_numpy(arrays["noisy"])[None]
            oracle = oracle_weights(arrays["sigma"], arrays["mask"], arrays["noisy"].shape)
            for m in MULTIPLIERS if t == "denoise" else TASK_MULTIPLIERS:
                for wname, w in (("unweighted", None), ("oracle", torch.from_numpy(oracle)[None])):
                    out = {"model": name, "case": row.case, "task": t, "multiplier": m,
                           "weighting": wname}  # fmt: skip
                    for label, scaled in (("reference", False), ("scaled", True)):
                        sol, seconds, obj = solve(name, settings, m, scaled, y, w, A)
                        out[f"{label}_iterations"] = int(sol.iterations)
                        out[f"{label}_seconds"] = seconds
                        out[f"{label}_capped"] = not bool(sol.converged.all())
                        out[f"{label}_objective"] = obj
                        out[f"{label}_mpsnr"] = mpsnr(clean, sol.x[0].double().numpy())
                    records.append(out)
                    print(f"{name:6s} {row.case:18s} ×{m:<7.4g} {wname:10s} iterations "
                          f"{out['reference_iterations']:5d} → {out['scaled_iterations']:5d}",
                          flush=True)  # fmt: skip
    df = pd.DataFrame(records)
    df["objective_change"] = (
        df.scaled_objective - df.reference_objective
    ) / df.reference_objective.abs()
    df["mpsnr_change"] = df.scaled_mpsnr - df.reference_mpsnr
    df["group"] = df.model + np.where(df.task == "denoise", "", " (tasks)")
    summary = (
        df.groupby("group", sort=False)
        .agg(
            solves=("model", "size"),
            iterations_reference=("reference_iterations", "sum"),
            iterations_scaled=("scaled_iterations", "sum"),
            seconds_reference=("reference_seconds", "sum"),
            seconds_scaled=("scaled_seconds", "sum"),
            capped_reference=("reference_capped", "sum"),
            capped_scaled=("scaled_capped", "sum"),
            objective_change_max=("objective_change", "max"),
            objective_change_min=("objective_change", "min"),
            mpsnr_change_max_abs=("mpsnr_change", lambda s: float(s.abs().max())),
        )
        .reset_index()
    )
    summary["iteration_ratio"] = summary.iterations_reference / summary.iterations_scaled
    print(
        "\npenalties × √m against the reference penalties (val cubes, w = 1 and oracle, 1 thread)"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    write_json(
        args.out,
        {
            "multipliers": list(MULTIPLIERS),
            "task_multipliers": list(TASK_MULTIPLIERS),
            "settings": SETTINGS,
            "summary": json.loads(summary.to_json(orient="records")),
            "records": json.loads(df.drop(columns="group").to_json(orient="records")),
        },
    )


if __name__ == "__main__":
    main()
