"""Cost of the source models' unrolled ADMM: time per iteration and peak memory.

    .venv/bin/python benchmarks/models.py [--quick] [--repeats N] [--out PATH]

For each model (tv, tvs, nn, tv_l1), image size and batch (64×64×31 at batch 1 and 8,
256×256×31 at batch 1 and 4; ``--quick``: 32×32×31 at batch 1 and 2) and mode:

* ``forward``: ``model.solve(y, w)`` (the reference's unrolled iterations) under
  ``torch.no_grad()``;
* ``fwd+bwd``: the same with ``w.requires_grad_()``, then ``backward()`` of ``⟨g, x(w)⟩``
  through every unrolled iteration (what bilevel training does).

Inputs are float32 (the training dtype), torch uses 2 threads. Each configuration runs in its own
fresh subprocess: one warm-up solve, then ``--repeats`` timed solves; the time is the median (and
the minimum) wall-clock time divided by the number of iterations. Workers run with
``OMP_WAIT_POLICY=PASSIVE``: on a shared 2-core machine, OpenMP's default spin-waiting made the
many small TV kernels up to 30× slower and erratic whenever another process held a core (measured:
64×64×31 TV, 4.5–143 ms per iteration with spinning, 4.5–4.9 ms passive); passive waiting
measures the models, not the neighbours.

Memory, three ways, none counting the inputs:

* ``tensor MB``: the peak of live tensor bytes during one extra, untimed solve, from
  ``torch.profiler`` with ``profile_memory=True`` (allocations attributed to the op that made
  them, frees as ``[memory]`` events, summed in time order): what the solve itself needs;
* ``RSS MB``: the increase of the process's resident-set high-water mark
  (``getrusage(RUSAGE_SELF).ru_maxrss``) over its resident set just before the first solve —
  what the machine had to provide, including whatever glibc kept after frees (fragmentation);
* ``saved MB`` (``fwd+bwd``): the bytes autograd keeps for the backward pass (unique storages,
  via ``torch.autograd.graph.saved_tensors_hooks``), which grows with the unrolled iterations.

A configuration whose RSS, extrapolated from the same mode at batch 1, would exceed half of the
available memory is skipped and reported as such.

Writes a table to stdout and JSON to ``benchmarks/results/models.json``.
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
MODELS = ("tv", "tvs", "nn", "tv_l1")
MODES = ("forward", "fwd+bwd")
FULL_SIZES = ((64, 1), (64, 8), (256, 1), (256, 4))
QUICK_SIZES = ((32, 1), (32, 2))
BANDS = 31
THREADS = 2


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(config: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import resource

    import torch

    from pipeline.models import build_model

    torch.set_num_threads(THREADS)
    size, batch = config["size"], config["batch"]
    gen = torch.Generator().manual_seed(0)
    shape = (batch, BANDS, size, size)
    y = torch.rand(shape, generator=gen)
    w = torch.rand(shape, generator=gen) + 0.5
    g = torch.randn(shape, generator=gen)
    model = build_model(config["model"])
    iterations = model.params.iterations

    def run(inputs: list | None = None) -> float:
        start = time.perf_counter()
        if config["mode"] == "forward":
            with torch.no_grad():
                model.solve(y, w)
        else:
            wg = w.clone().requires_grad_(True)
            if inputs is not None:
                inputs.append(wg)
            (model.solve(y, wg).x * g).sum().backward()
            assert wg.grad is not None and bool(torch.isfinite(wg.grad).all())
        return time.perf_counter() - start

    before = rss_bytes()
    times = [run() for _ in range(config["repeats"] + 1)][1:]  # the first run warms up
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    median = statistics.median(times)
    # One more, untimed solve under the profiler: the peak of live tensor bytes (allocations
    # are attributed to the op that made them, frees are "[memory]" events), and the bytes
    # autograd saves for the backward pass (unique storages).
    from torch.profiler import ProfilerActivity, profile

    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with (
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        run(inputs := [y])
    live = tensor_peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        tensor_peak = max(tensor_peak, live)
    for t in inputs:  # inputs saved by reference are not the solve's memory
        storages.pop(t.untyped_storage().data_ptr(), None)
    saved = sum(storages.values())
    return {
        **config,
        "iterations": iterations,
        "seconds_per_solve": median,
        "ms_per_iteration": 1e3 * median / iterations,
        "ms_per_iteration_min": 1e3 * min(times) / iterations,
        "tensor_peak_mb": tensor_peak / 2**20,
        "rss_peak_mb": max(peak - before, 0) / 2**20,
        "saved_mb": saved / 2**20,
    }


def run_config(config: dict) -> dict:
    return _worker.run_config(__file__, config, THREADS)


def table(rows: list[dict]) -> str:
    head = f"{'model':6s} {'H×W×C':>10s} {'B':>2s} {'mode':8s} {'its':>3s} "
    head += f"{'ms/it':>8s} {'(min)':>8s} {'ms/it/img':>9s} "
    head += f"{'tensor MB':>9s} {'RSS MB':>8s} {'saved MB':>8s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        dims = f"{r['size']}×{r['size']}×{BANDS}"
        prefix = f"{r['model']:6s} {dims:>10s} {r['batch']:>2d} {r['mode']:8s}"
        if "skipped" in r or "error" in r:
            lines.append(f"{prefix}   —  {r.get('skipped') or r.get('error')}")
            continue
        per_img = r["ms_per_iteration"] / r["batch"]
        lines.append(
            f"{prefix} {r['iterations']:>3d} {r['ms_per_iteration']:8.2f} "
            f"{r['ms_per_iteration_min']:8.2f} {per_img:9.2f} {r['tensor_peak_mb']:9.1f} "
            f"{r['rss_peak_mb']:8.1f} {r['saved_mb']:8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed solves per config")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/models.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    repeats = args.repeats or (2 if args.quick else 3)
    budget = available_bytes() / 2
    rows: list[dict] = []
    started = time.perf_counter()
    load_start = os.getloadavg()
    for model in MODELS:
        for mode in MODES:
            per_image_mb = None
            for size, batch in sizes:
                config = {
                    "model": model,
                    "mode": mode,
                    "size": size,
                    "batch": batch,
                    "repeats": repeats,
                }
                if per_image_mb is not None and per_image_mb[0] == size:
                    predicted = per_image_mb[1] * batch * 2**20
                    if predicted > budget:
                        rows.append({**config, "skipped": f"needs ≈ {predicted / 2**30:.1f} GB"})
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                        continue
                row = run_config(config)
                if "rss_peak_mb" in row and batch == 1:
                    per_image_mb = (size, row["rss_peak_mb"])
                rows.append(row)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    report = {
        "description": (
            "Unrolled source models (reference settings), float32, torch threads = "
            f"{THREADS}, OMP_WAIT_POLICY=PASSIVE, one fresh subprocess per configuration. "
            "ms_per_iteration: median (and _min: minimum) wall time of a solve (forward: "
            "no_grad; fwd+bwd: solve + backward of <g, x(w)> to w) / iterations, after one "
            "warm-up. tensor_peak_mb: peak of live tensor bytes during one solve (torch "
            "profiler, profile_memory). rss_peak_mb: increase of the process's max RSS "
            "(getrusage) over its RSS before the first solve (tensors + temporaries + what the "
            "allocator kept; inputs excluded). saved_mb: bytes autograd saves for backward."
        ),
        "quick": args.quick,
        "repeats": repeats,
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
    from pipeline.io import write_json  # atomic: a killed run leaves no half-written JSON

    write_json(args.out, report)
    print()
    print(table(rows))
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
