"""The evaluate stage's solve engines on the same cells, and what the per-cell cache saves.

    .venv/bin/python benchmarks/evaluate_engine.py [--cases impulse stripe] [--batches 4 8 16]
        [--images 3] [--full] [--fresh-cache] [--skip-engine] [--skip-cache]

Needs the pipeline's own ``data/degraded`` and ``models/dlw`` (``dvc repro degrade train@dlw``).
Prints two tables and writes ``benchmarks/results/evaluate_engine.json``.

1. **Engines** (in-process, no Ray, one torch thread, float32, multiplier 1): the first
   ``--images`` test images (0: all five) of each of ``--cases`` × the weightings
   ``unweighted``, ``oracle``, ``handcrafted`` and every ``dlw`` variant and seed × the
   classical targets ``tv``, ``tvs``, ``nn``, ``lrtv``, ``e3dtv`` with their
   ``evaluate.restorers`` overrides from params.yaml, solved by
   :func:`pipeline.evaluate.cells.run_group` one cell at a time (batch 1) and in batches of
   ``--batches`` samples (:meth:`pipeline.evaluate.restorers.Restorer.restore_batch`). A
   restorer's jobs are ordered with the cells without a map (``unweighted``) first, then those
   with one, so that every batch holds one strength and one "has map" flag, as ``run_group``
   needs; each restorer is warmed up (one cell, one batch of two) before it is timed, and its
   engines run one after the other, so slow drifts of the machine hit them alike. Cells are
   scored as tuning cells (MPSNR only), so the time is the solves'. Reported per restorer and
   overall: cells, wall and thread-CPU seconds, cells per CPU second, the speed relative to
   batch 1 (CPU time: with one thread every kernel runs in the calling thread, so it does not
   depend on what else the machine runs), the iterations paid per iteration needed (a batch
   runs until its slowest sample stops: Σ_batches n·max(its) / Σ its; 1 for batch 1), the
   largest |ΔMPSNR| against batch 1 (must be ≤ 1e-6 dB, else the script exits non-zero),
   whether every cell took the same iterations, and the peak resident memory while that engine
   ran (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs`` before each
   run; its rise over the resident size at the reset is a lower bound of what the engine
   allocated, as memory freed earlier may be reused).
2. **Cache**: :func:`pipeline.evaluate.transfer.run_transfer` twice with ``evaluate.cache: true``
   under a local Ray (``--ray-cpus``), on the ``evaluate`` section of params.yaml with ``--full``,
   else on a subset (case ``impulse``; restorers ``tv``, ``nn``, ``tv_l1``, ``bm4d``; every
   weighting). The cache is the stage's own (``runs/cache/cells``), emptied first only with
   ``--fresh-cache``: without it the first run may already read cells back. Reported: seconds,
   cells read back (hits) and solved (misses) per run, and whether the second run's records equal
   the first's.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("tv", "tvs", "nn", "lrtv", "e3dtv")
WEIGHTINGS = ("unweighted", "oracle", "handcrafted", "dlw")
CACHE_SUBSET = {"cases": ["impulse"], "restorers": ("tv", "nn", "tv_l1", "bm4d")}
MPSNR_TOL = 1e-6  # dB: batched and per-cell solves must agree to this


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def status_kib(field: str) -> int:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in KiB (-1 if absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_peak() -> bool:
    """Reset the peak resident size (``VmHWM``) to the current one (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ordered_jobs(restorer, weightings, rows, maps) -> list:
    """The restorer's cells at multiplier 1: without a map first, then with one, so that
    consecutive jobs share the strength and the "has map" flag (what a batch needs)."""
    from pipeline.evaluate.cells import Job, weight_key

    jobs = []
    for has_map in (False, True):
        for w in weightings:
            for row in rows:
                if (weight_key(w.label, w.seed, row["key"]) in maps) == has_map:
                    jobs.append(
                        Job("tune", restorer.label, restorer.seed, w.label, w.seed, 1.0, row["key"])
                    )
    return jobs


def paid_ratio(records: list[dict], has_map: list[bool], batch: int) -> float:
    """Σ_batches n·max(its) / Σ its: the iterations a batched solve runs per iteration needed
    (each run of one "has map" flag is cut into batches of ``batch``, as ``run_group`` does)."""
    paid = needed = 0
    start = 0
    while start < len(records):
        end = start
        while end < len(records) and end - start < batch and has_map[end] == has_map[start]:
            end += 1
        its = [r["iterations"] for r in records[start:end]]
        paid += len(its) * max(its)
        needed += sum(its)
        start = end
    return paid / needed if needed else math.nan


def engine_benchmark(args, evaluate) -> dict:
    import pandas as pd
    import torch

    from pipeline.evaluate.cells import run_group, weight_key
    from pipeline.evaluate.restorers import plan_restorers
    from pipeline.evaluate.transfer import load_items, weight_maps
    from pipeline.evaluate.weightings import plan_weightings

    torch.set_num_threads(1)
    missing = [r for r in args.restorers if r not in evaluate.restorers]
    if missing:
        sys.exit(f"params.yaml evaluate.restorers has no {missing}")
    p = dataclasses.replace(
        evaluate,
        restorers={r: evaluate.restorers[r] for r in args.restorers},
        weightings=list(WEIGHTINGS),
        precision="float32",
    )
    manifest = pd.read_parquet(ROOT / "data/degraded/manifest.parquet")
    items, meta = load_items(ROOT, manifest, args.cases)
    rows = [r for r in meta if r["split"] == "test"]
    if args.images:
        keep = {
            (c, i)
            for c in args.cases
            for i in sorted(r["image_id"] for r in rows if r["case"] == c)[: args.images]
        }
        rows = [r for r in rows if (r["case"], r["image_id"]) in keep]
    weightings = plan_weightings(p.weightings, ROOT)
    maps = weight_maps(items, rows, weightings, ROOT)
    restorers = plan_restorers(p, ROOT)
    payload = {
        "items": items,
        "weights": maps,
        "restorers": {r.key: r for r in restorers},
        "root": str(ROOT),
    }
    engines = [1, *sorted(set(args.batches) - {1})]
    print(
        f"engines: {len(rows)} test images ({', '.join(args.cases)}) × {len(weightings)} "
        f"weightings × {len(restorers)} restorers; batches {engines}; float32, 1 thread",
        flush=True,
    )
    out = []
    for r in restorers:
        jobs = ordered_jobs(r, weightings, rows, maps)
        has_map = [weight_key(j.weighting, j.weighting_seed, j.item) in maps for j in jobs]
        # Warm-up (lazy initialisation, first-call costs), untimed: one cell, one small batch.
        run_group(jobs[:1], payload, 1, "float32", 1)
        run_group(jobs[-2:], payload, 1, "float32", 2)
        reference = None
        for b in engines:
            reset_peak()
            rss0 = status_kib("VmHWM")  # the resident size at the reset
            wall, cpu = time.perf_counter(), time.thread_time()
            records = run_group(jobs, payload, 1, "float32", b)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            peak = status_kib("VmHWM")
            if reference is None:
                reference = records
            d = max(abs(a["mpsnr"] - c["mpsnr"]) for a, c in zip(reference, records, strict=True))
            same_its = all(
                a["iterations"] == c["iterations"] for a, c in zip(reference, records, strict=True)
            )
            out.append(
                {
                    "restorer": r.label,
                    "batch": b,
                    "cells": len(jobs),
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "iterations": sum(x["iterations"] for x in records),
                    "same_iterations": same_its,
                    "paid_per_needed": paid_ratio(records, has_map, b),
                    "max_abs_d_mpsnr": d,
                    "peak_rss_mib": peak / 1024,
                    # ≥ 0: the kernel syncs its per-thread RSS counters lazily (pages).
                    "peak_rise_mib": max(0, peak - rss0) / 1024,
                }
            )
            print(f"  {r.label:6s} batch {b:2d}: {cpu:6.1f} s CPU, |ΔMPSNR| ≤ {d:.1e}", flush=True)
    return {
        "cases": args.cases,
        "test_images": len(rows),
        "weightings": [f"{w.label}" + (f"#{w.seed}" if w.seed >= 0 else "") for w in weightings],
        "restorers": {r: p.restorers[r] for r in args.restorers},
        "batches": engines,
        "precision": "float32",
        "multiplier": 1.0,
        "rows": out,
    }


def engine_table(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame(rows)
    total = (
        df.groupby("batch")
        .agg(
            cells=("cells", "sum"),
            wall_s=("wall_s", "sum"),
            cpu_s=("cpu_s", "sum"),
            iterations=("iterations", "sum"),
            same_iterations=("same_iterations", "all"),
            max_abs_d_mpsnr=("max_abs_d_mpsnr", "max"),
            peak_rss_mib=("peak_rss_mib", "max"),
            peak_rise_mib=("peak_rise_mib", "max"),
        )
        .reset_index()
    )
    # Overall paid/needed: `iterations` are the needed ones (per-sample counts), paid = needed ×
    # the restorer's ratio.
    paid = (df.iterations * df.paid_per_needed).groupby(df.batch).sum()
    total["paid_per_needed"] = (paid / df.iterations.groupby(df.batch).sum()).values
    total["restorer"] = "all"
    df = pd.concat([df, total], ignore_index=True)
    df["cells_per_s"] = df.cells / df.cpu_s
    base = df[df.batch == 1].set_index("restorer").cpu_s
    df["speed_vs_b1"] = df.restorer.map(base) / df.cpu_s
    cols = ["restorer", "batch", "cells", "wall_s", "cpu_s", "cells_per_s", "speed_vs_b1"]
    cols += ["paid_per_needed", "max_abs_d_mpsnr", "same_iterations", "peak_rss_mib"]
    cols += ["peak_rise_mib"]
    return df[cols]


def same(a, b) -> bool:
    """Equal, NaN included (the multiplier of an untuned restorer)."""
    nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return nan or a == b


def cache_benchmark(args, evaluate) -> dict:
    from pipeline.compute import ray_session
    from pipeline.evaluate.transfer import CACHE_DIR, run_transfer

    p = evaluate
    if not args.full:
        p = dataclasses.replace(
            p,
            cases=list(CACHE_SUBSET["cases"]),
            restorers={r: evaluate.restorers.get(r, {}) for r in CACHE_SUBSET["restorers"]},
        )
    p = dataclasses.replace(p, cache=True)
    folder = ROOT / CACHE_DIR
    if args.fresh_cache:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"cache: run_transfer × 2 ({'params.yaml evaluate' if args.full else 'subset'}: cases "
        f"{p.cases or 'all'}, restorers {list(p.restorers)}, weightings {p.weightings}); "
        f"cache {'emptied first' if args.fresh_cache else 'as found'} at {CACHE_DIR}",
        flush=True,
    )
    runs, first = [], None
    with ray_session(None, args.ray_cpus):
        for name in ("first", "second"):
            start = time.perf_counter()
            result = run_transfer(ROOT, p)
            seconds = time.perf_counter() - start
            cells = result["tuning"] + result["test"]
            c = result["cache"]
            run = {
                "run": name,
                "seconds": seconds,
                "cells": len(cells),
                "hits": c.hits,
                "misses": c.misses,
                "corrupt": len(c.corrupt),
            }
            if first is None:
                first = cells
            else:
                keys = ("mpsnr", "multiplier", "restorer", "weighting", "item", "phase")
                run["equal_to_first"] = len(first) == len(cells) and all(
                    same(a[k], b[k]) for a, b in zip(first, cells, strict=True) for k in keys
                )
            runs.append(run)
            print(f"  {name}: {seconds:.1f} s, {c.hits} hits, {c.misses} misses", flush=True)
    return {
        "full": args.full,
        "fresh_cache": args.fresh_cache,
        "ray_cpus": args.ray_cpus,
        "cases": p.cases,
        "restorers": p.restorers,
        "weightings": p.weightings,
        "grid": p.grid,
        "precision": p.precision,
        "batch": p.batch,
        "runs": runs,
    }


def main() -> None:
    import json

    import torch

    from pipeline.config import load_params
    from pipeline.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["impulse", "stripe"])
    parser.add_argument("--batches", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--restorers", nargs="+", default=list(TARGETS))
    parser.add_argument("--images", type=int, default=3, help="test images per case (0: all)")
    parser.add_argument("--full", action="store_true", help="cache part: all of params.yaml")
    parser.add_argument("--fresh-cache", action="store_true", help="empty runs/cache/cells first")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/evaluate_engine.json"
    )
    args = parser.parse_args()
    if any(b < 1 for b in args.batches):
        parser.error("--batches must be ≥ 1")
    evaluate = load_params(ROOT / "params.yaml").evaluate
    report: dict = {
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "threads": 1,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        }
    }
    bad = False
    if not args.skip_engine:
        engine = engine_benchmark(args, evaluate)
        table = engine_table(engine["rows"])
        engine["summary"] = json.loads(table.to_json(orient="records"))
        report["engine"] = engine
        print()
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        worst = float(table.max_abs_d_mpsnr.max())
        bad = worst > MPSNR_TOL
        print(f"max |ΔMPSNR| batched vs per-cell: {worst:.3g} dB (must be ≤ {MPSNR_TOL:g})")
        print()
    if not args.skip_cache:
        report["cache"] = cache_benchmark(args, evaluate)
        print()
        print(f"{'run':8s} {'seconds':>8s} {'cells':>6s} {'hits':>6s} {'misses':>6s}  equal")
        for run in report["cache"]["runs"]:
            eq = run.get("equal_to_first", "")
            print(
                f"{run['run']:8s} {run['seconds']:8.1f} {run['cells']:6d} {run['hits']:6d} "
                f"{run['misses']:6d}  {eq}"
            )
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["machine"]["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json(args.out, report)
    print(f"peak RSS of the whole run: {report['machine']['ru_maxrss_mib']:.0f} MiB; {args.out}")
    if bad:
        sys.exit(f"batched solves differ from per-cell ones by more than {MPSNR_TOL:g} dB")


if __name__ == "__main__":
    main()
