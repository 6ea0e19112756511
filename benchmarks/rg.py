"""Regularising gradients: the cost of a training step per variant and of the test-time solve.

    .venv/bin/python benchmarks/rg.py [--steps 5] [--train-steps 60]

1. **Training step** of each variant (``denoiser``, ``bound``, ``deqgd``, ``rerg``) at the
   default ``train.rg`` of params.yaml on ``data/clean``: the mean wall time of ``--steps``
   steps after a warm-up one, and the bytes of every tensor autograd saves for backward during a
   step (``torch.autograd.graph.saved_tensors_hooks``; forward and backward: the graph's memory,
   which an unrolled solver would multiply by its iteration count).
2. **Test-time solve**: a ``rerg`` net trained for ``--train-steps`` steps restores the first
   test tile (31 × 32 × 32 at the default profile) degraded by each task of the default suite
   (σ = 10/255; Gaussian blur of 1.6 px; ×2 super-resolution; 50 % inpainting) — T evaluations
   of the slowest chunk of bands, seconds and PSNR — with Anderson acceleration and with the
   plain iteration, at the default cap (``max_iter``) and to the tolerance (cap 500).

One torch thread; writes ``benchmarks/results/rg.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def method(variant: str, **overrides):
    import yaml

    from pipeline.config import parse_params

    section = yaml.safe_load((ROOT / "params.yaml").read_text())["train"].get("rg") or {}
    section = {**section, "variants": [variant], **overrides}
    return parse_params({"train": {"methods": ["rg"], "rg": section}}).train.method("rg")


def trainer(variant: str, **overrides):
    m = method(variant, **overrides)
    config = {"variant": variant, "seed_index": 0, **m.params.constants(), **m.trial_config()}
    context = {"seed": 0, "data_dir": str(ROOT / "data/clean"), "device": "cpu", "threads": 1}
    return m, m.trainer(config, context)


def step_costs(steps: int) -> dict:
    import torch

    rows = {}
    for variant in ("denoiser", "bound", "deqgd", "rerg"):
        _, tr = trainer(variant)
        tr.train_step(0)  # warm-up
        t = time.perf_counter()
        for i in range(1, steps + 1):
            tr.train_step(i)
        seconds = (time.perf_counter() - t) / steps
        total = [0]

        def pack(x, total=total):
            total[0] += x.numel() * x.element_size()
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            tr.train_step(steps + 1)
        rows[variant] = {"step_s": seconds, "saved_mib": total[0] / 2**20}
    return rows


def solve_costs(train_steps: int) -> dict:
    import numpy as np
    import torch

    from pipeline.degrade import operators as ops
    from pipeline.degrade.tasks import exact_gaussian_kernel
    from pipeline.methods.rg import RG
    from pipeline.methods.rg.solver import restore_cube

    _, tr = trainer("rerg", epochs=1, steps_per_epoch=train_steps)
    tr.run_epoch()
    net = tr.net.eval().requires_grad_(False)
    cap = net.solve_settings["max_iter"]
    tile = sorted((ROOT / "data/clean/test").glob("*.npy"))[0]
    clean = np.load(tile).astype(np.float64)
    rng = np.random.default_rng(0)
    tasks = {
        "denoise": None,
        "blur-g1.6": ops.Blur(torch.from_numpy(exact_gaussian_kernel(1.6))),
        "sr-x2": ops.Downsampling(2),
        "inpaint-50": ops.Inpainting(ops.random_mask(clean.shape, 0.5, rng)),
    }
    rows = {}
    for name, A in tasks.items():
        with torch.no_grad():
            y = clean if A is None else A.A(torch.from_numpy(clean)).numpy()
        y = y + 10 / 255 * rng.standard_normal(y.shape)
        if isinstance(A, ops.Inpainting):
            y = y * A.mask.numpy()
        y = y.astype(np.float32)
        RG.restore(net, y, None, 1.0, A=A)  # warm-up
        for solver in ("anderson", "fixed_point_iter"):
            for limit in (cap, 500):
                settings = {**net.solve_settings, "solver": solver, "max_iter": limit}
                t = time.perf_counter()
                x, d = restore_cube(net, y, None, 1.0, A, **settings)
                seconds = time.perf_counter() - t
                psnr = float(10 * np.log10(1 / np.mean((x - clean) ** 2)))
                rows[f"{name}/{solver}/{limit}"] = {
                    "task": name,
                    "solver": solver,
                    "max_iter": limit,
                    "iterations": d["iterations"],
                    "converged": d["converged"],
                    "residual": d["primal_residual"],
                    "seconds": seconds,
                    "psnr": psnr,
                }
    return {"shape": list(clean.shape), "train_steps": train_steps, "cap": cap, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/rg.json"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    steps = step_costs(args.steps)
    p = method("rerg").params
    print(f"Training step (batch {p.batch_size}, {p.patch_size}² patches, width {p.width}, "
          f"depth {p.depth}; one thread)\n")  # fmt: skip
    print("| variant | s / step | saved for backward (MiB) |")
    print("|---|---:|---:|")
    for v, r in steps.items():
        print(f"| {v} | {r['step_s']:.3f} | {r['saved_mib']:.2f} |")
    solves = solve_costs(args.train_steps)
    c, h, w = solves["shape"]
    print(f"\nTest-time solve of a {c}×{h}×{w} cube (rerg net after {args.train_steps} steps, "
          f"tol {p.tol:g}, strength 1)\n")  # fmt: skip
    print("| task | solver | cap | T evals | converged | rel. change | s | PSNR (dB) |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for r in solves["rows"].values():
        head = f"| {r['task']} | {r['solver']} | {r['max_iter']} | {r['iterations']} | "
        print(head + f"{r['converged']} | {r['residual']:.1e} | {r['seconds']:.3f} | "
              f"{r['psnr']:.2f} |")  # fmt: skip
    out = {"steps": steps, "solve": solves}
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
