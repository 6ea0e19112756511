"""The three rewrites of DLWnet's ``separable_cl`` layout, each against what it replaces, at the
paper's size (batch 10, 64×64×31, width 64).

Usage: ``python benchmarks/dlw_layers.py [--threads 2] [--reps 3]``; prints a table and writes
``benchmarks/results/dlw_layers.json``. Best of ``reps`` wall-clock forward + backward (after a
warm-up), one process, interleaved:

1. ReLU on a fresh (310, 64, 64, 64) convolution output: ``F.relu`` (a new tensor forward and
   backward) against the in-place ``_InplaceReLU`` of ``pipeline/methods/dlw/net.py``; the gap
   is what allocating and faulting in two 325 MB tensors costs on this machine;
2. the first (1 → 64, 3×3) layer: one input channel, whose NCHW output is converted to NHWC,
   against the zero second channel that makes oneDNN answer NHWC;
3. the (3, 3, 3) head with one output: ``Conv3d`` in ``channels_last_3d`` against one 2-D
   convolution with three outputs summed along the bands;
4. a spectral (3, 1) layer: oneDNN's weight gradient against the matrix products of
   ``_SpectralConv``, at the paper's size and at a default trial's (width 16), which sets the
   width from which the net uses it.

Each pair's outputs and gradients are compared too (largest relative difference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

B, C, H, W, WIDTH = 10, 31, 64, 64, 64


def timed(fn, reps: int) -> tuple[float, tuple]:
    """Best forward + backward seconds of ``fn() -> (out, grads_fn)`` and its last results."""
    best, last = float("inf"), None
    for _ in range(reps + 1):  # the first is a warm-up
        t = time.perf_counter()
        last = fn()
        best = min(best, time.perf_counter() - t)
    return best, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from pipeline.methods.dlw.net import _relu

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    n = B * C

    def rel(a, b) -> float:
        return float((a - b).abs().max() / b.abs().max())

    # 1. ReLU after a convolution: only the ReLU is timed; the input is made fresh each time.
    x0 = torch.randn(n, WIDTH, H, W).contiguous(memory_format=cl)
    g = torch.randn_like(x0)

    def relu_case(inplace: bool):
        def run():
            x = x0.clone().requires_grad_()
            y = x * 1.0  # a non-leaf, as a convolution's output
            t = time.perf_counter()
            out = _relu(y) if inplace else F.relu(y)
            out.backward(g)
            run.seconds = time.perf_counter() - t
            return out.detach(), x.grad

        return run

    rows = {}
    for name, inplace in (("relu out of place", False), ("relu in place", True)):
        run = relu_case(inplace)
        best = float("inf")
        for _ in range(args.reps + 1):
            res = run()
            best = min(best, run.seconds)
        rows[name] = {"seconds": best, "result": res}

    # 2. The first layer.
    y = torch.rand(n, 1, H, W)
    w0, b0 = torch.randn(WIDTH, 1, 3, 3) * 0.3, torch.randn(WIDTH) * 0.1
    g1 = torch.randn(n, WIDTH, H, W).contiguous(memory_format=cl)

    def first(two_channels: bool):
        def run():
            w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
            if two_channels:
                z = torch.cat([y, torch.zeros_like(y)], 1).contiguous(memory_format=cl)
                k = torch.cat([w, torch.zeros_like(w)], 1).contiguous(memory_format=cl)
                out = F.conv2d(z, k, b, padding=1)
            else:
                out = F.conv2d(y, w.contiguous(memory_format=cl), b, padding=1)
                out = out.contiguous(memory_format=cl)
            out.backward(g1)
            return out.detach(), w.grad

        return run

    for name, two in (
        ("first layer, 1 channel + NHWC copy", False),
        ("first layer, 2 channels", True),
    ):
        s, res = timed(first(two), args.reps)
        rows[name] = {"seconds": s, "result": res}

    # 3. The head.
    vol = torch.rand(B, WIDTH, C, H, W).contiguous(memory_format=torch.channels_last_3d)
    wh, bh = torch.randn(1, WIDTH, 3, 3, 3) * 0.05, torch.randn(1)
    gh = torch.randn(B, C, H, W)

    def head(two_d: bool):
        def run():
            z = vol.clone(memory_format=torch.channels_last_3d).requires_grad_()
            w, b = wh.clone().requires_grad_(), bh.clone().requires_grad_()
            if two_d:
                zb = z.permute(0, 2, 1, 3, 4).reshape(n, WIDTH, H, W)
                k = w[0].transpose(0, 1).contiguous(memory_format=cl)
                o = F.pad(F.conv2d(zb, k, padding=1).reshape(B, C, 3, H, W), (0,) * 6 + (1, 1))
                out = o[:, :-2, 0] + o[:, 1:-1, 1] + o[:, 2:, 2] + b
            else:
                k = w.contiguous(memory_format=torch.channels_last_3d)
                out = F.conv3d(z, k, b, padding=1)[:, 0]
            out.backward(gh)
            return out.detach(), z.grad

        return run

    for name, two_d in (("head, Conv3d", False), ("head, 2-D with 3 outputs", True)):
        s, res = timed(head(two_d), args.reps)
        rows[name] = {"seconds": s, "result": res}

    # 4. A spectral (3, 1) layer: oneDNN's weight gradient against _SpectralConv's matrix
    # products, at the paper's size and at a default trial's (batch 4, 32×32×31, width 16),
    # which decides SPECTRAL_GEMM_WIDTH.
    from pipeline.methods.dlw.net import _SpectralConv

    for b_, s_, f_ in ((B, H, WIDTH), (4, 32, 16)):
        vs = torch.randn(b_, f_, C, s_ * s_).contiguous(memory_format=cl)
        ws = (torch.randn(f_, f_, 3, 1) * 0.1).contiguous(memory_format=cl)
        bs, gs = torch.randn(f_) * 0.1, torch.randn(b_, f_, C, s_ * s_).contiguous(memory_format=cl)

        def spectral(gemm: bool, vs=vs, ws=ws, bs=bs, gs=gs):
            def run():
                v = vs.detach().requires_grad_()
                w, b = ws.clone().requires_grad_(), bs.clone().requires_grad_()
                conv = _SpectralConv.apply if gemm else lambda *a: F.conv2d(*a, padding=(1, 0))
                out = conv(v, w, b)
                out.backward(gs)
                return out.detach(), v.grad, w.grad, b.grad

            return run

        size = f"width {f_}, batch {b_}, {s_}²"
        for name, gemm in (
            (f"spectral, oneDNN, {size}", False),
            ("spectral, bmm weight grad", True),
        ):
            s, res = timed(spectral(gemm), args.reps)
            rows[name if not gemm else f"{name} ({f_})"] = {"seconds": s, "result": res}

    names = list(rows)
    print(
        f"DLWnet rewrites, paper size, {args.threads} threads, best of {args.reps} (s, fwd + bwd)"
    )
    out = {"threads": args.threads, "reps": args.reps, "pairs": []}
    for before, after in zip(names[::2], names[1::2], strict=True):
        a, b = rows[before], rows[after]
        diff = max(rel(x, y) for x, y in zip(b["result"], a["result"], strict=True))
        ratio = a["seconds"] / b["seconds"]
        print(
            f"{before:<36} {a['seconds']:.3f}  →  {after:<26} {b['seconds']:.3f}  ×{ratio:.2f}"
            f"  max rel. diff {diff:.1e}"
        )
        out["pairs"].append(
            {
                "before": before,
                "after": after,
                "before_s": a["seconds"],
                "after_s": b["seconds"],
                "speedup": ratio,
                "max_rel_difference": diff,
            }
        )
    from pipeline.io import write_bytes

    path = ROOT / "benchmarks" / "results" / "dlw_layers.json"
    write_bytes(path, (json.dumps(out, indent=2) + "\n").encode("utf-8"))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
