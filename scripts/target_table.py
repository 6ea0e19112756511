"""The target models on the ``val`` split: unweighted and oracle-weighted MPSNR at the reference
and at the best regularisation strength of a small grid, iterations and time per solve.

    .venv/bin/python scripts/target_table.py [--split val] [--jobs 2] [--out PATH]

For every target (``tv``, ``tvs``, ``nn``, ``lrtv``, ``e3dtv``; Neumann boundaries where the model
has one, ``solve(y, w, converge=True)``) × noise case of the split × weighting:

* weightings: ``unweighted`` (w = 1) and ``oracle`` (w ∝ 1/σ² from the true σ map, 0 on the
  corrupted pixels, normalised to mean 1 per image; docs/science.md);
* strengths: the reference parameters times the multipliers ``GRID`` of the *main*
  regularisation strength: ``lam`` for tv and tvs, ``1/lam_factor`` for nn (its λ weighs the
  fidelity), ``nuclear`` and ``tau`` together for lrtv (its sparse weight ``lam`` is part of the
  robust fidelity and stays), ``tau`` for e3dtv (``lam`` stays);
* recorded per solve: MPSNR against the clean image (:func:`pipeline.evaluate.metrics.mpsnr`),
  iterations, the converged flag, final residuals and wall time (one torch thread per worker).

Prints a markdown table and writes ``benchmarks/results/target_table.json`` (every solve) and
``benchmarks/results/target_table.md`` (the table). Reads the pipeline's own outs:
``data/degraded/manifest.parquet`` (noisy, σ and mask per case and image) and the clean images it
points to (checked against their recorded hashes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.evaluate.metrics import mpsnr  # noqa: E402
from pipeline.io import array_sha256, load_npy, load_npz, write_bytes, write_json  # noqa: E402

TARGETS = ("tv", "tvs", "nn", "lrtv", "e3dtv")
GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
WEIGHTINGS = ("unweighted", "oracle")


def scaled_params(name: str, multiplier: float) -> dict:
    """The target's parameters with its main regularisation strength × ``multiplier``
    (Neumann boundaries for tv and tvs, as every target here)."""
    from pipeline.models.strength import scaled_params as strengths

    extra = {"boundary": "neumann"} if name in ("tv", "tvs") else {}
    return {**extra, **strengths(name, multiplier)}


def oracle_weights(sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """1/σ², 0 on corrupted pixels, mean 1 (float32)."""
    w = np.where(mask, 0.0, 1.0 / np.asarray(sigma, dtype=np.float64) ** 2)
    return (w / w.mean()).astype(np.float32)


def load_cases(split: str) -> list[dict]:
    import pandas as pd

    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    rows = manifest[manifest.split == split]
    if rows.empty:
        raise ValueError(f"data/degraded/manifest.parquet: no rows for split {split!r}")
    cases = []
    for _, row in rows.iterrows():
        arrays = load_npz(ROOT / row["path"], ("noisy", "sigma", "mask"))
        clean = load_npy(ROOT / row["clean_path"])
        if array_sha256(clean) != row["clean_sha256"]:
            raise ValueError(f"{row['clean_path']}: does not match the manifest's clean_sha256")
        cases.append(
            {
                "case": row["case"],
                "image_id": row["image_id"],
                "clean": clean,
                "noisy": arrays["noisy"],
                "w": oracle_weights(arrays["sigma"], arrays["mask"]),
            }
        )
    return cases


_CASES: list[dict] = []


def _init_worker(split: str) -> None:
    import torch

    torch.set_num_threads(1)
    _CASES.extend(load_cases(split))


def solve_one(job: tuple[str, int, str, float]) -> dict:
    import torch

    from pipeline.models import build_model

    name, index, weighting, multiplier = job
    case = _CASES[index]
    params = scaled_params(name, multiplier)
    model = build_model(name, **params)
    y = torch.from_numpy(case["noisy"])[None]
    w = torch.from_numpy(case["w"])[None] if weighting == "oracle" else None
    start = time.perf_counter()
    with torch.no_grad():
        sol = model.solve(y, w, converge=True)
    seconds = time.perf_counter() - start
    return {
        "target": name,
        "case": case["case"],
        "image_id": case["image_id"],
        "weighting": weighting,
        "multiplier": multiplier,
        "params": params,
        "mpsnr": mpsnr(case["clean"], sol.x[0].numpy()),
        "noisy_mpsnr": mpsnr(case["clean"], case["noisy"]),
        "iterations": sol.iterations,
        "converged": bool(sol.converged.all()),
        "primal_residual": float(sol.primal_residual.max()),
        "dual_residual": float(sol.dual_residual.max()),
        "seconds": seconds,
    }


def summarise(solves: list[dict]) -> list[dict]:
    """One row per (target, case, image, weighting): reference and best of the grid."""
    groups: dict[tuple, list[dict]] = {}
    for s in solves:
        groups.setdefault((s["target"], s["case"], s["image_id"], s["weighting"]), []).append(s)
    rows = []
    for (target, case, image_id, weighting), group in groups.items():
        ref = next(s for s in group if s["multiplier"] == 1.0)
        best = max(group, key=lambda s: s["mpsnr"])
        rows.append(
            {
                "target": target,
                "case": case,
                "image_id": image_id,
                "weighting": weighting,
                "noisy_mpsnr": ref["noisy_mpsnr"],
                "ref_mpsnr": ref["mpsnr"],
                "best_mpsnr": best["mpsnr"],
                "best_multiplier": best["multiplier"],
                "ref_iterations": ref["iterations"],
                "ref_converged": ref["converged"],
                "ref_seconds": ref["seconds"],
                "grid_converged": sum(s["converged"] for s in group),
                "grid_solves": len(group),
                "mean_iterations": float(np.mean([s["iterations"] for s in group])),
                "mean_seconds": float(np.mean([s["seconds"] for s in group])),
            }
        )
    order = {t: i for i, t in enumerate(TARGETS)}
    cases = {c: i for i, c in enumerate(dict.fromkeys(s["case"] for s in solves))}
    rows.sort(key=lambda r: (order[r["target"]], cases[r["case"]], r["image_id"], r["weighting"]))
    return rows


def markdown(rows: list[dict]) -> str:
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["target"], r["case"], r["image_id"]), {})[r["weighting"]] = r
    head = (
        "| target | case | noisy | w=1 ref | w=1 best (×) | oracle ref | oracle best (×) "
        "| its ref (w=1 / oracle) | s/solve ref (w=1 / oracle) | converged (grid, w=1 / oracle) |"
    )
    lines = [head, "|" + "---|" * 10]
    for (target, case, _), pair in by_key.items():
        u, o = pair["unweighted"], pair["oracle"]
        lines.append(
            f"| {target} | {case} | {u['noisy_mpsnr']:.2f} "
            f"| {u['ref_mpsnr']:.2f} | {u['best_mpsnr']:.2f} ({u['best_multiplier']:g}) "
            f"| {o['ref_mpsnr']:.2f} | {o['best_mpsnr']:.2f} ({o['best_multiplier']:g}) "
            f"| {u['ref_iterations']} / {o['ref_iterations']} "
            f"| {u['ref_seconds']:.2f} / {o['ref_seconds']:.2f} "
            f"| {u['grid_converged']}/{u['grid_solves']} "
            f"/ {o['grid_converged']}/{o['grid_solves']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/target_table.json")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown} (known: {', '.join(TARGETS)})")

    cases = load_cases(args.split)
    # The slowest targets first, so that the pool's tail is short.
    jobs = [
        (t, i, wt, m)
        for t in reversed(targets)
        for i in range(len(cases))
        for wt in WEIGHTINGS
        for m in GRID
    ]
    started = time.perf_counter()
    load_start = os.getloadavg()
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with get_context("spawn").Pool(args.jobs, _init_worker, (args.split,)) as pool:
            solves = []
            for k, s in enumerate(pool.imap_unordered(solve_one, jobs), 1):
                solves.append(s)
                print(
                    f"[{k}/{len(jobs)}] {s['target']} {s['case']} {s['weighting']} "
                    f"×{s['multiplier']:g}: {s['mpsnr']:.2f} dB, {s['iterations']} its, "
                    f"{s['seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    case_order = {c["case"]: i for i, c in reversed(list(enumerate(cases)))}
    solves.sort(key=lambda s: (case_order[s["case"]], s["target"], s["weighting"], s["multiplier"]))
    rows = summarise(solves)
    table = markdown(rows)
    wall = time.perf_counter() - started
    from pipeline.models import MODELS

    report = {
        "description": (
            f"Target models on the {args.split!r} split, solve(y, w, converge=True), Neumann "
            "boundaries where the model has one; MPSNR at the reference strengths (multiplier 1) "
            f"and the best of the multipliers {list(GRID)} of the main regularisation strength "
            "(tv/tvs: lam; nn: 1/lam_factor; lrtv: nuclear and tau; e3dtv: tau); weightings: "
            "unweighted (w = 1) and oracle (1/sigma^2, 0 on corrupted pixels, mean 1 per image). "
            "seconds: wall time of one solve in a worker process with one torch thread."
        ),
        "split": args.split,
        "grid": list(GRID),
        "reference_params": {t: dataclasses.asdict(MODELS[t][1]()) for t in targets},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jobs": args.jobs,
            "python": platform.python_version(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
        },
        "wall_seconds": wall,
        "rows": rows,
        "solves": solves,
    }
    write_json(args.out, report)
    md = args.out.with_suffix(".md")
    write_bytes(md, (table + "\n").encode("utf-8"))
    print(table)
    print(f"\n{len(jobs)} solves in {wall:.0f} s; wrote {args.out} and {md}")


if __name__ == "__main__":
    main()
