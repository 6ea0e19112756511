"""Time one DLW bilevel training step, part by part, and the throughput of concurrent trials.

Usage: ``python benchmarks/train_step.py [--quick] [--steps N]``; prints a table and writes
``benchmarks/results/train_step.json`` (keeping its ``roofline`` entry: every learned method
against the machine's GEMM rate and a plain formulation, ``benchmarks/train_roofline.py``).

Per-step split (one thread, as a trial with ``cpu: 1``). The step's autograd graph is cut at the
weight map ``w`` so that every part is timed on its own, with exactly the work of a fused step
(chain rule: ∂L/∂θ = (∂w/∂θ)ᵀ ∂L/∂w):

1. ``data``: drawing the batch (patches + DLW's impulse training noise, NumPy);
2. ``net fwd``: ``w = DLWnet(y)``;
3. per source model t: ``solve fwd`` = the unrolled ADMM ``X_t = solve(y, w̃)`` with
   ``w̃ = w.detach().requires_grad_()``, and ``solve bwd`` = backward of ``mean(X_t − X̄)²/T``
   into ``w̃.grad`` (accumulating over models);
4. ``net bwd``: ``w.backward(w̃.grad)``; 5. ``adam``: the optimiser step.

The fused ``bilevel_step`` is timed too, as a check that the parts add up. Medians over steps
after one warm-up step. Each part is timed as *thread CPU time* (``time.thread_time``): with one
torch thread every kernel runs in the calling thread, so the numbers do not depend on what else
the (shared) machine runs; wall-clock medians are recorded beside them. Sizes: the CPU default
(32×32×31, width 16, batch 4) and the paper's (64×64×31, width 64, batch 10; a few steps only).

Concurrency (2 cores): the CPU default with source set ``tv`` run as real ``Trainer`` steps in
(a) 1 process × 1 thread, (b) 1 process × 2 threads, (c) 2 processes × 1 thread at once;
throughput = total steps per second (wall clock), quoted relative to (a). Wall-clock ratios are
only meaningful on an otherwise idle machine (the load average before and after is recorded), so
the CPU seconds per step are recorded too: 2 × CPU(a) / CPU(c) estimates the idle-machine
throughput of (c) relative to (a) whatever else runs (it measures how much two trials slow each
other through shared caches and memory bandwidth).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("nn", "tv", "tvs")
CONFIGS = {
    "cpu-default": {"size": 32, "bands": 31, "width": 16, "batch": 4},
    "paper": {"size": 64, "bands": 31, "width": 64, "batch": 10},
}


def cube(bands: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    b = np.linspace(0, 1, bands)[:, None, None]
    return (0.5 + 0.3 * np.sin(2 * np.pi * (xx + b + rng.uniform())) * np.cos(np.pi * yy)).astype(
        np.float32
    )


def time_parts(cfg: dict, steps: int) -> dict:
    import torch

    from pipeline.methods.dlw.bilevel import bilevel_step
    from pipeline.methods.dlw.data import draw_batch
    from pipeline.methods.dlw.net import DLWNet
    from pipeline.methods.dlw.params import DLWParams
    from pipeline.models.registry import build_model

    torch.set_num_threads(1)
    tiles = [cube(cfg["bands"], cfg["size"], i) for i in range(2)]
    noise = DLWParams().noise
    models = {m: build_model(m) for m in MODELS}
    torch.manual_seed(0)
    net = DLWNet(cfg["width"], 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rows: dict[str, list[float]] = {}
    cpu_rows: dict[str, list[float]] = {}
    last_cpu = [time.thread_time()]

    def tick(key: str, t0: float) -> float:
        t1, c1 = time.perf_counter(), time.thread_time()
        rows.setdefault(key, []).append(t1 - t0)
        cpu_rows.setdefault(key, []).append(c1 - last_cpu[0])
        last_cpu[0] = c1
        return t1

    for step in range(steps + 1):
        t, last_cpu[0] = time.perf_counter(), time.thread_time()
        b = draw_batch(
            tiles,
            seed=0,
            source_set="bench",
            seed_index=0,
            step=step,
            batch_size=cfg["batch"],
            patch_size=cfg["size"],
            augment=True,
            noise=noise,
        )
        y, clean = torch.from_numpy(b.noisy), torch.from_numpy(b.clean)
        t = tick("data", t)
        opt.zero_grad(set_to_none=True)
        w = net(y)
        t = tick("net fwd", t)
        wt = w.detach().requires_grad_()
        for name, model in models.items():
            x = model.solve(y, wt).x
            t = tick(f"{name} solve fwd", t)
            (torch.mean((x - clean) ** 2) / len(models)).backward()
            t = tick(f"{name} solve bwd", t)
        w.backward(wt.grad)
        t = tick("net bwd", t)
        opt.step()
        t = tick("adam", t)
        bilevel_step(net, list(models.values()), opt, y, clean, step=step)
        tick("fused step (all 3 models)", t)
    # Drop the warm-up step (first-call allocations, FFT plans).
    return {
        "wall": {k: statistics.median(v[1:]) for k, v in rows.items()},
        "cpu": {k: statistics.median(v[1:]) for k, v in cpu_rows.items()},
    }


def _trainer_steps(threads: int, steps: int, queue) -> None:
    import torch

    from pipeline.degrade.registry import Case
    from pipeline.methods.dlw.bilevel import bilevel_step
    from pipeline.methods.dlw.params import DLWParams
    from pipeline.methods.dlw.trainer import Trainer, TrialSpec
    from pipeline.train.data import Batch

    torch.set_num_threads(threads)
    cfg = CONFIGS["cpu-default"]
    tiles = [cube(cfg["bands"], cfg["size"], i) for i in range(2)]
    noise = DLWParams().noise
    val_y, info = Case.from_param(noise)(tiles[0], np.random.default_rng(0))
    val = Batch(val_y[None], tiles[0][None], info["mask"][None])
    spec = TrialSpec(
        source_set="tv",
        seed_index=0,
        width=cfg["width"],
        batch_size=cfg["batch"],
        patch_size=cfg["size"],
        steps_per_epoch=steps,
        noise=noise.to_param(),
        val_models=("tv",),
    )
    trainer = Trainer(spec, tiles, val)
    noisy, clean = trainer.batch(0)
    bilevel_step(trainer.net, trainer.models, trainer.optimizer, noisy, clean, step=0)  # warm-up
    queue.put(("ready", os.getpid()))
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(1, steps + 1):
        noisy, clean = trainer.batch(step)
        bilevel_step(trainer.net, trainer.models, trainer.optimizer, noisy, clean, step=step)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    queue.put(("done", steps / wall, cpu / steps))


def throughput(processes: int, threads: int, steps: int) -> tuple[float, float]:
    """Total steps per second of ``processes`` concurrent trials of ``threads`` threads each,
    and their mean CPU seconds per step."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_trainer_steps, args=(threads, steps, queue)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    done = [msg for msg in (queue.get() for _ in range(2 * processes)) if msg[0] == "done"]
    for p in procs:
        p.join()
    return float(sum(m[1] for m in done)), float(np.mean([m[2] for m in done]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps of the CPU default")
    ap.add_argument("--paper-steps", type=int, default=2, help="timed steps at paper scale")
    ap.add_argument("--concurrency-steps", type=int, default=30)
    ap.add_argument(
        "--quick", action="store_true", help="skip the paper-scale step (an earlier result is kept)"
    )
    args = ap.parse_args()

    load_before = os.getloadavg()
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "loadavg_at_start": load_before,
        },
        "parts": {},
    }
    import torch

    results["machine"]["torch"] = torch.__version__
    for name, cfg in CONFIGS.items():
        if name == "paper" and args.quick:
            continue
        steps = args.steps if name == "cpu-default" else args.paper_steps
        results["parts"][name] = {
            "config": cfg,
            "steps": steps,
            "loadavg_at_start": os.getloadavg(),
            "seconds": time_parts(cfg, steps),
        }
    single, single_cpu = throughput(1, 1, args.concurrency_steps)
    two_threads, two_threads_cpu = throughput(1, 2, args.concurrency_steps)
    two_procs, two_procs_cpu = throughput(2, 1, args.concurrency_steps)
    results["concurrency"] = {
        "steps_per_s": {
            "1 process × 1 thread": single,
            "1 process × 2 threads": two_threads,
            "2 processes × 1 thread": two_procs,
        },
        "relative_to_1x1": {
            "1 process × 2 threads": two_threads / single,
            "2 processes × 1 thread": two_procs / single,
        },
        "cpu_s_per_step": {
            "1 process × 1 thread": single_cpu,
            "1 process × 2 threads": two_threads_cpu,
            "2 processes × 1 thread": two_procs_cpu,
        },
        # On a busy machine wall-clock ratios mislead; CPU time per step does not depend on
        # how much of a core a process gets, so 2 × (CPU alone / CPU side by side) estimates
        # the idle-machine throughput of 2 one-thread trials relative to 1.
        "idle_estimate_2x1_relative_to_1x1": 2 * single_cpu / two_procs_cpu,
    }
    results["machine"]["loadavg_at_end"] = os.getloadavg()

    print(
        "DLW training step, one thread: median seconds per step, thread CPU time "
        f"(wall time in brackets); load average at start {load_before[0]:.2f}"
    )
    names = list(results["parts"])
    keys = list(next(iter(results["parts"].values()))["seconds"]["cpu"])
    print(f"{'part':<28}" + "".join(f"{n:>24}" for n in names))
    for k in [*keys, "sum of parts"]:
        cells = []
        for n in names:
            sec = results["parts"][n]["seconds"]
            if k == "sum of parts":
                cpu, wall = (
                    sum(v for q, v in sec[m].items() if not q.startswith("fused"))
                    for m in ("cpu", "wall")
                )
            else:
                cpu, wall = sec["cpu"][k], sec["wall"][k]
            cells.append(f"{cpu:>12.4f} ({wall:>8.4f})")
        print(f"{k:<28}" + "".join(f"{c:>24}" for c in cells))
    print("\nthroughput, source set tv, CPU default (steps/s; ratio to 1 process × 1 thread)")
    for k, v in results["concurrency"]["steps_per_s"].items():
        cpu = results["concurrency"]["cpu_s_per_step"][k]
        print(f"{k:<28}{v:>10.3f}{v / single:>10.2f}   CPU {cpu:.3f} s/step")
    est = results["concurrency"]["idle_estimate_2x1_relative_to_1x1"]
    print(f"idle-machine estimate, 2 processes × 1 thread vs 1 × 1 (from CPU per step): {est:.2f}")
    print(f"load average at end {results['machine']['loadavg_at_end'][0]:.2f}")
    out = ROOT / "benchmarks" / "results" / "train_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if args.quick and "paper" in previous.get("parts", {}):  # keep an earlier paper-scale run
        results["parts"]["paper"] = previous["parts"]["paper"]
    if "roofline" in previous:  # benchmarks/train_roofline.py's entry
        results["roofline"] = previous["roofline"]
    from pipeline.io import write_bytes

    # Atomic (temporary file, then rename): an interrupted run never leaves half a JSON file.
    write_bytes(out, (json.dumps(results, indent=2) + "\n").encode("utf-8"))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
