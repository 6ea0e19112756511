"""Cost of the target models run to convergence: iterations, time per solve, time per iteration.

    .venv/bin/python benchmarks/targets.py [--quick] [--repeats N] [--out PATH]

The companion of ``benchmarks/models.py`` (the source models' unrolled iterations) for the
targets of the transfer matrix: ``tv``, ``tvs``, ``nn``, ``lrtv`` and ``e3dtv`` with their
reference strengths, Neumann boundaries (``nn`` has none) and ``solve(y, w, converge=True)``
under ``torch.no_grad()``, on 64×64×31 and 256×256×31 cubes (``--quick``: 32×32×31), batch 1,
``w = 1`` and the oracle weights.

Unlike the unrolled sources, a target's cost depends on the image (its iterations do), so the
input is realistic rather than random: a synthetic 31-band cube made from scikit-image's
``astronaut`` photograph by :func:`pipeline.data.synthetic.rgb_to_cube` (resized to the size,
min–max normalised), degraded by the protocol's ``mixture`` case (non-i.i.d. Gaussian noise plus
stripes, dead lines and impulses, seed 0); the oracle weights are ``1/σ²``, 0 on the corrupted
pixels, mean 1. Inputs are float32 (targets compute in float64 internally), torch uses 2 threads,
``OMP_WAIT_POLICY=PASSIVE`` (see ``benchmarks/models.py`` for why). Each configuration runs in its
own fresh subprocess: ``--repeats`` timed solves (default 1: a solve lasts seconds to minutes, so
a warm-up is noise; with more, one warm-up first), the time is the median. A configuration whose
predicted time (ms per iteration of the smallest size of the same model and weighting, scaled by
the pixel count, × 3000 iterations) exceeds ``--budget`` seconds per solve runs with
``max_iterations`` capped at what fits, and the row says so; ``converged`` reports the stopping
rule either way.

Writes a table to stdout and JSON to ``benchmarks/results/targets.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import _worker

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("tv", "tvs", "nn", "lrtv", "e3dtv")
WEIGHTINGS = ("unweighted", "oracle")
FULL_SIZES = (64, 256)
QUICK_SIZES = (32,)
BANDS = 31
THREADS = 2
MAX_ITERATIONS = 3000  # every target's default cap


def target_params(name: str) -> dict:
    """Reference strengths; Neumann boundaries wherever the model has a boundary."""
    return {} if name == "nn" else {"boundary": "neumann"}


def make_input(size: int, weighting: str):
    """The degraded synthetic cube ``(1, 31, size, size)`` float32 and its weights."""
    import numpy as np
    import torch
    from skimage import data
    from skimage.transform import resize

    from pipeline.data.synthetic import rgb_to_cube
    from pipeline.degrade.registry import Case
    from pipeline.seeding import rng_for

    rgb = resize(data.astronaut() / 255.0, (size, size, 3), anti_aliasing=True)
    clean = rgb_to_cube(np.clip(rgb, 0.0, 1.0), bands=BANDS, seed=0)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy, info = Case.from_param({"name": "mixture"})(
        clean, rng_for(0, "benchmarks/targets", f"{size}")
    )
    y = torch.from_numpy(np.asarray(noisy, dtype=np.float32))[None]
    if weighting == "unweighted":
        return y, None
    w = np.where(info["mask"], 0.0, 1.0 / np.asarray(info["sigma"], dtype=np.float64) ** 2)
    return y, torch.from_numpy((w / w.mean()).astype(np.float32))[None]


def worker(config: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import torch

    from pipeline.models import build_model

    torch.set_num_threads(THREADS)
    y, w = make_input(config["size"], config["weighting"])
    params = target_params(config["model"])
    if config.get("max_iterations"):
        base = build_model(config["model"], **params).params
        cap = max(config["max_iterations"], base.min_iterations)
        params["max_iterations"] = cap
    model = build_model(config["model"], **params)

    def run():
        start = time.perf_counter()
        with torch.no_grad():
            sol = model.solve(y, w, converge=True)
        return time.perf_counter() - start, sol

    if config["repeats"] > 1:
        run()  # warm-up
    runs = [run() for _ in range(config["repeats"])]
    seconds = statistics.median(t for t, _ in runs)
    sol = runs[-1][1]
    return {
        **config,
        "iterations": sol.iterations,
        "converged": bool(sol.converged.all()),
        "primal_residual": float(sol.primal_residual.max()),
        "dual_residual": float(sol.dual_residual.max()),
        "tol": model.params.tol,
        "max_iterations_used": model.params.max_iterations,
        "seconds_per_solve": seconds,
        "ms_per_iteration": 1e3 * seconds / sol.iterations,
    }


def run_config(config: dict) -> dict:
    return _worker.run_config(__file__, config, THREADS)


def table(rows: list[dict]) -> str:
    head = f"{'model':6s} {'H×W×C':>11s} {'weights':10s} {'its':>5s} {'conv':>5s} "
    head += f"{'primal':>8s} {'dual':>8s} {'s/solve':>8s} {'ms/it':>8s}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        dims = f"{r['size']}×{r['size']}×{BANDS}"
        prefix = f"{r['model']:6s} {dims:>11s} {r['weighting']:10s}"
        if "error" in r:
            lines.append(f"{prefix}   —  {r['error']}")
            continue
        note = f"capped at {r['max_iterations']} its" if r.get("max_iterations") else ""
        lines.append(
            f"{prefix} {r['iterations']:>5d} {'yes' if r['converged'] else 'no':>5s} "
            f"{r['primal_residual']:8.1e} {r['dual_residual']:8.1e} "
            f"{r['seconds_per_solve']:8.2f} {r['ms_per_iteration']:8.2f}  {note}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed solves per config")
    parser.add_argument(
        "--budget", type=float, default=120.0, help="seconds per solve before capping iterations"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/targets.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    repeats = args.repeats or 1
    rows: list[dict] = []
    started = time.perf_counter()
    load_start = os.getloadavg()
    for model in TARGETS:
        for weighting in WEIGHTINGS:
            per_pixel = None  # ms per iteration and pixel, from the smallest size
            for size in sizes:
                config = {
                    "model": model,
                    "weighting": weighting,
                    "size": size,
                    "repeats": repeats if size == sizes[0] else 1,
                }
                if per_pixel is not None:
                    cap = int(1e3 * args.budget / (per_pixel * size * size))
                    if cap < MAX_ITERATIONS:
                        config["max_iterations"] = cap
                row = run_config(config)
                if "ms_per_iteration" in row and per_pixel is None:
                    per_pixel = row["ms_per_iteration"] / (size * size)
                rows.append(row)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    report = {
        "description": (
            "Target models (reference strengths, Neumann boundaries) solved with "
            "converge=True under torch.no_grad(), float32 input, torch threads = "
            f"{THREADS}, OMP_WAIT_POLICY=PASSIVE, batch 1; input: synthetic 31-band cube from "
            "skimage astronaut (rgb_to_cube, min-max normalised) + the mixture case (seed 0); "
            "weights: 1 or the oracle 1/sigma^2 (0 on corrupted pixels, mean 1). "
            "seconds_per_solve: median wall time over repeats (after a warm-up when repeats > 1), "
            "one fresh subprocess per configuration; ms_per_iteration = seconds / iterations. "
            "max_iterations (when present): the cap applied so a solve fits the budget."
        ),
        "quick": args.quick,
        "repeats": repeats,
        "budget_seconds": args.budget,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": _torch_version(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
        },
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print()
    print(table(rows))
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
