"""The training step of every learned method against the machine's limit and against a plain
formulation of the same step, measured side by side.

Usage: ``python benchmarks/train_roofline.py [--quick] [--reps N] [--threads 1 2]``; prints a
Markdown table and writes the ``roofline`` entry of ``benchmarks/results/train_step.json``
(``benchmarks/train_step.py`` keeps it). ``--quick``: the CPU default sizes only (the paper
sizes of an earlier run are kept).

Per method, size (the CPU default of ``params.yaml`` and the paper's of ``profiles/paper.yaml``)
and torch thread count:

- the **rates** of the machine: ``torch.mm`` of two 2048² matrices, float32 and (where the CPU
  multiplies it natively: AVX-512-BF16 or AMX) bfloat16, best of a few, measured in this run;
- the **plain** formulation, written here and not imported: the paper's nets as plain
  ``Conv3d``/``Conv2d`` modules in the default memory format, the unrolled iteration as the
  paper writes it, float32 autograd;
- the **project's** step with the method's own modules (float32; DLW also with
  ``precision: bf16`` and with ``checkpoint_unrolled``), run interleaved with the plain one,
  step by step, so both see the same machine load;
- median step time (wall clock), its split where the step separates (DLW: data, net forward,
  solver forward, solver backward, net backward, optimiser — the graph cut at the weight map, as
  ``benchmarks/train_step.py``), the peak resident memory a step adds (RSS sampled every 2 ms),
  the FLOPs of a step (``torch.utils.flop_counter.FlopCounterMode``: the convolutions and
  matrix products, i.e. the nets') and ``net_gemm_fraction``: those FLOPs over the net's time
  (DLW: net forward + backward; the others: the whole step, a lower bound) over the float32
  GEMM rate.

``speedup_vs_plain`` = plain median / project median (float32), ``speedup_vs_plain_bf16`` =
plain median / project median with the method's ``precision: bf16`` (its nets under bfloat16
autocast, solvers and losses in float32; measured where the CPU has native bfloat16). For the
methods whose nets are already plain ``Conv2d`` stacks, ``whatif_channels_last_vs_plain`` says
what ``channels_last``, applied from here to their unchanged modules, would give.
The headline figures of a (method, size) are those of one thread at the CPU default size (its
trials run one torch thread each, ``cpu: 1``) and of the largest thread count measured at the
paper size.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {
    "dlw": {
        "default": {"size": 32, "bands": 31, "width": 16, "batch": 4},
        "paper": {"size": 64, "bands": 31, "width": 64, "batch": 10},
    },
    "guidance": {
        "default": {"width": 16, "stages": 3, "patch": 32, "batch": 8, "denoiser": "tiny"},
        "paper": {"width": 64, "stages": 5, "patch": 128, "batch": 5, "denoiser": "general"},
    },
    "rg": {
        "default": {"width": 16, "depth": 5, "patch": 24, "batch": 8},
        "paper": {"width": 64, "depth": 8, "patch": 64, "batch": 16},
    },
    "alr": {
        "default": {"widths": (8, 8, 8), "patch": 15, "batch": 32},
        "paper": {"widths": (128, 64, 32), "patch": 15, "batch": 32},
    },
}


# --- the machine ------------------------------------------------------------------------------


def rss() -> int:
    """Resident memory of this process, bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``), so that the next
    step's peak is measured from the memory it really holds, not from the last one's cache."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms by a thread (torch's
    kernels release the GIL, so the sampler runs during them)."""

    def __enter__(self) -> PeakRSS:
        trim()
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def added(self) -> int:
        return self.peak - self.start


def gemm_rate(dtype_name: str, n: int = 2048, reps: int = 4) -> float:
    """GFLOP/s of ``torch.mm`` on ``n × n`` matrices, the best of ``reps`` (after a warm-up);
    with one torch thread timed in thread CPU time, as the steps."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    timer = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = timer()
        torch.mm(a, b)
        best = min(best, timer() - t)
    return 2 * n**3 / best / 1e9


def count_flops(step: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


class Clock:
    """Split of one step: ``lap(name)`` closes the part that began at the last lap. ``timer``:
    thread CPU time with one torch thread, else wall clock (set by :func:`measure`)."""

    timer: Callable[[], float] = time.perf_counter

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self.t = Clock.timer()

    def lap(self, name: str) -> None:
        t = Clock.timer()
        self.parts[name] = self.parts.get(name, 0.0) + t - self.t
        self.t = t


# --- DLW --------------------------------------------------------------------------------------


def _plain_tv(y, w, lam=0.1, mu=0.1, rho=1.05, iterations=20):
    """The reference's unrolled TV ADMM (Rui et al., arXiv 2301.06081; their ``HWTV.forward``),
    transcribed: periodic differences by ``torch.roll``, the Z-solve by FFT, output Z."""
    import torch
    import torch.nn.functional as F

    def D(x):
        return torch.stack([torch.roll(x, -1, -2) - x, torch.roll(x, -1, -1) - x])

    def Dt(p):
        return (torch.roll(p[0], 1, -2) - p[0]) + (torch.roll(p[1], 1, -1) - p[1])

    h, wd = y.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=y.dtype).view(-1, 1)
    fx = torch.fft.fftfreq(wd, dtype=y.dtype).view(1, -1)
    dtd = (2 - 2 * torch.cos(2 * math.pi * fy)) + (2 - 2 * torch.cos(2 * math.pi * fx))
    x, z = y, y
    dz = D(y)
    l1, l2 = torch.zeros_like(y), torch.zeros_like(dz)
    mu1 = mu2 = mu
    for _ in range(iterations):
        u = F.softshrink(dz + l2 / mu2, lam / mu2)
        rhs = mu1 * x + l1 + Dt(mu2 * u - l2)
        z = torch.fft.ifft2(torch.fft.fft2(rhs) / (mu1 + mu2 * dtd)).real
        dz = D(z)
        x = (w * y + mu1 * z - l1) / (w + mu1)
        l1 = l1 + mu1 * (x - z)
        l2 = l2 + mu2 * (dz - u)
        mu1, mu2 = mu1 * rho, mu2 * rho
    return z


def dlw_case(cfg: dict, threads: int) -> dict:
    import torch
    from torch import nn

    from benchmarks.train_step import cube
    from pipeline.methods.dlw.bilevel import unrolled
    from pipeline.methods.dlw.data import draw_batch
    from pipeline.methods.dlw.net import DLWNet, native_bf16, normalise_weights
    from pipeline.methods.dlw.params import DLWParams
    from pipeline.models.registry import build_model

    tiles = [cube(cfg["bands"], cfg["size"], i) for i in range(2)]
    noise = DLWParams().noise
    tv = build_model("tv")
    width = cfg["width"]

    class PlainDLWNet(nn.Module):  # the paper's net: Conv3d modules, default memory format
        def __init__(self) -> None:
            super().__init__()
            self.spatial = nn.ModuleList(
                nn.Conv3d(1 if i == 0 else width, width, (1, 3, 3), padding=(0, 1, 1))
                for i in range(3)
            )
            self.spectral = nn.ModuleList(
                nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0)) for _ in range(3)
            )
            self.head = nn.Conv3d(width, 1, 3, padding=1)

        def forward(self, y):
            z = y.unsqueeze(1)
            for a, b in zip(self.spatial, self.spectral, strict=True):
                z = torch.relu(b(torch.relu(a(z))))
            h = self.head(z)[:, 0]
            n = h[0].numel()
            return (n * torch.softmax(h.reshape(len(h), -1), 1)).reshape(h.shape) + 1e-4

    torch.manual_seed(0)
    plain_net = PlainDLWNet()
    state = plain_net.state_dict()

    def project_net(precision: str) -> DLWNet:
        net = DLWNet(width, 3, "auto", precision)
        net.load_state_dict(state)
        return net

    def batch(step: int):
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
        return torch.from_numpy(b.noisy), torch.from_numpy(b.clean)

    def make_step(net, solve) -> Callable[[int], dict]:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step(k: int) -> dict:
            c = Clock()
            y, clean = batch(k)
            c.lap("data")
            opt.zero_grad(set_to_none=True)
            w = net(y)
            c.lap("net fwd")
            wt = w.detach().requires_grad_()
            x = solve(y, wt)
            c.lap("solver fwd")
            loss = torch.mean((x - clean) ** 2)
            loss.backward()
            c.lap("solver bwd")
            w.backward(wt.grad)
            c.lap("net bwd")
            opt.step()
            c.lap("optimiser")
            return {"parts": c.parts, "loss": float(loss.detach())}

        return step

    variants = {
        "plain": make_step(plain_net, _plain_tv),
        "project": make_step(project_net("fp32"), lambda y, w: unrolled(tv, y, w)),
        "project checkpointed": make_step(
            project_net("fp32"), lambda y, w: unrolled(tv, y, w, checkpoint=True)
        ),
    }
    if native_bf16("cpu"):
        variants["project bf16"] = make_step(project_net("bf16"), lambda y, w: unrolled(tv, y, w))
    y0, _ = batch(0)
    net32 = project_net("fp32")
    layout, _ = net32.resolved(torch.device("cpu"))

    def flop_step():
        h = net32.scores(y0)
        normalise_weights(h).sum().backward()

    return {
        "variants": variants,
        "flops": count_flops(flop_step),
        "net_parts": ("net fwd", "net bwd"),
        "note": f"TV source, layout auto → {layout}",
    }


# --- guidance, rg, alr ------------------------------------------------------------------------


def _gauss_kernels(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    r = np.arange(size) - size // 2
    out = []
    for s in rng.uniform(0.5, 2.0, n):
        k = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * s * s))
        out.append(k / k.sum())
    return np.asarray(out, dtype=np.float32)


def timed_step(params, loss_fn: Callable[[], Any], lr: float):
    """One optimiser step on ``loss_fn()``, timed in parts: forward, backward, optimiser. The
    guidance, rg and alr rows share it."""
    import torch

    opt = torch.optim.Adam(params, lr=lr)

    def step(k: int) -> dict:
        c = Clock()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn().float()
        c.lap("fwd")
        loss.backward()
        c.lap("bwd")
        opt.step()
        c.lap("optimiser")
        return {"parts": c.parts, "loss": float(loss.detach())}

    return step


def _to_channels_last(module) -> None:
    """Weights in ``channels_last``, and every convolution's output turned into it: with one
    input channel both formats have the same strides and oneDNN keeps the default one, so the
    first layer's output must be converted for the rest to follow."""
    import torch
    from torch import nn

    module.to(memory_format=torch.channels_last)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(
                lambda _m, _i, out: out.contiguous(memory_format=torch.channels_last)
            )


def guidance_case(cfg: dict, threads: int) -> dict:
    """The naive variant's step (proxy and HQS net jointly on f + g: both nets, every stage)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from pipeline.methods.guidance.net import DILATIONS, GuidanceNet, ircnn_rhos
    from pipeline.methods.precision import native_bf16, set_precision

    rng = np.random.default_rng(0)
    n, p, w = cfg["batch"], cfg["patch"], cfg["width"]
    clean = torch.from_numpy(rng.uniform(0, 1, (n, 1, p, p)).astype(np.float32))
    sigma = torch.full((n, 1, p, p), 0.03)
    noisy = clean + sigma * torch.randn(n, 1, p, p)
    kernel = torch.from_numpy(_gauss_kernels(n, 9, rng))
    rhos = ircnn_rhos(cfg["stages"], 49.0, 13.0, 0.01)

    class Plain(nn.Module):  # Gao et al. 2023: proxy CNN + K HQS stages of IRCNN denoisers
        def __init__(self) -> None:
            super().__init__()
            ch = [1, w, w, w, 1]
            self.proxy = nn.ModuleList(
                nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(ch)
            )
            dil = DILATIONS[cfg["denoiser"]]
            chans = [2] + [w] * (len(dil) - 1) + [1]
            self.den = nn.ModuleList(
                nn.ModuleList(
                    nn.Conv2d(a, b, 3, padding=d, dilation=d)
                    for a, b, d in zip(chans[:-1], chans[1:], dil, strict=True)
                )
                for _ in rhos
            )

        def forward(self, y, k):
            s = y * 20.0
            for conv in self.proxy:
                s = F.relu(conv(s))
            s = s / 20.0
            kh = k.shape[-1]
            psf = torch.zeros(len(y), p, p)
            psf[:, :kh, :kh] = k
            khat = torch.fft.fft2(torch.roll(psf, (-(kh // 2), -(kh // 2)), (-1, -2)))[:, None]
            x, fy = y, torch.fft.fft2(y)
            for rho, convs in zip(rhos, self.den, strict=True):
                num = khat.conj() * fy + rho * torch.fft.fft2(x)
                z = torch.fft.ifft2(num / (khat.abs() ** 2 + rho)).real
                h = torch.cat([z, 20.0 * s], 1)
                for i, conv in enumerate(convs):
                    h = conv(h)
                    h = F.relu(h) if i < len(convs) - 1 else h
                x = z - h
            return x, s

    def project_net():
        torch.manual_seed(0)
        return GuidanceNet(rhos, w, cfg["denoiser"], True)

    def make_step(net, forward):
        def loss():
            x, s = forward(net)
            return torch.mean((x.float() - clean) ** 2) + torch.mean((s.float() - sigma) ** 2)

        return timed_step(net.parameters(), loss, 1e-4)

    def proj_forward(net):
        s = net.proxy(noisy)
        return net.hqs(noisy, kernel, s), s

    cl = project_net()
    _to_channels_last(cl)
    variants = {
        "plain": make_step(Plain(), lambda m: m(noisy, kernel)),
        "project": make_step(project_net(), proj_forward),
        "whatif channels_last": make_step(cl, proj_forward),
    }
    if native_bf16("cpu"):  # precision: bf16, the FFT deconvolution in float32
        variants["project bf16"] = make_step(set_precision(project_net(), "bf16"), proj_forward)
    flop_net = project_net()
    return {
        "variants": variants,
        "flops": count_flops(lambda: sum(t.sum() for t in proj_forward(flop_net)).backward()),
        "net_parts": None,
        "note": f"naive variant, {cfg['denoiser']} denoisers (FFT deconvolution inside the step)",
    }


def rg_case(cfg: dict, threads: int) -> dict:
    """The ``denoiser`` variant's step (score matching of G_φ); the DEQ variants' Anderson
    forward and implicit backward are not timed here (``benchmarks/rg.py``)."""
    import torch
    from torch import nn

    from pipeline.methods.precision import native_bf16, set_precision
    from pipeline.methods.rg.net import RGNet

    rng = np.random.default_rng(0)
    n, p, w, d = cfg["batch"], cfg["patch"], cfg["width"], cfg["depth"]
    clean = torch.from_numpy(rng.uniform(0, 1, (n, 1, p, p)).astype(np.float32))
    noise = torch.randn(n, 1, p, p)
    s = torch.from_numpy(rng.uniform(0.01, 0.2, (n, 1, 1, 1)).astype(np.float32))

    def plain_net():
        ch = [1] + [w] * (d - 1) + [1]
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(ch)):
            layers.append(nn.Conv2d(a, b, 3, padding=1))
            if i < d - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def project_net():
        torch.manual_seed(0)
        return RGNet(w, d)

    def make_step(net, scale=1.0):
        def loss():
            return torch.mean((s * net(clean + s * noise).float() * scale - noise) ** 2)

        params = [q for q in net.parameters() if q.requires_grad]
        return timed_step(params, loss, 5e-4)

    cl = project_net()
    _to_channels_last(cl)
    variants = {
        "plain": make_step(plain_net(), scale=20.0),
        "project": make_step(project_net()),
        "whatif channels_last": make_step(cl),
    }
    if native_bf16("cpu"):
        variants["project bf16"] = make_step(set_precision(project_net(), "bf16"))
    flop_net = project_net()
    return {
        "variants": variants,
        "flops": count_flops(lambda: flop_net(clean + s * noise).sum().backward()),
        "net_parts": None,
        "note": "denoiser variant (score matching); DEQ variants not timed here",
    }


def alr_case(cfg: dict, threads: int) -> dict:
    """One WGAN-GP critic step (Prost et al. 2021): two scores and the gradient penalty, whose
    double backward runs the critic three times."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from pipeline.methods.alr.net import Critic, wgan_gp_loss
    from pipeline.methods.precision import native_bf16, set_precision

    rng = np.random.default_rng(0)
    n, p = cfg["batch"], cfg["patch"]
    w1, w2, w3 = cfg["widths"]
    clean = torch.from_numpy(rng.uniform(0, 1, (n, 1, p, p)).astype(np.float32))
    noisy = clean + 0.1 * torch.randn(n, 1, p, p)
    alpha = torch.from_numpy(rng.uniform(0, 1, n).astype(np.float32))

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(
                [
                    nn.Conv2d(1, w1, 3),
                    nn.Conv2d(w1, w2, 3),
                    nn.Conv2d(w2, w2, 3, stride=3),
                    nn.Conv2d(w2, w2, 3),
                    nn.Conv2d(w2, w3, 1),
                    nn.Conv2d(w3, w3, 1),
                ]
            )

        def score(self, x):
            h = x
            for i, conv in enumerate(self.convs):
                h = conv(h)
                h = F.relu(h) if i < len(self.convs) - 1 else h
            return h.mean(dim=1).flatten(1).mean(1)

    def plain_loss(m):
        a = alpha.view(-1, 1, 1, 1)
        xh = (a * clean + (1 - a) * noisy).requires_grad_()
        (g,) = torch.autograd.grad(m.score(xh).sum(), xh, create_graph=True)
        gp = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return m.score(clean).mean() - m.score(noisy).mean() + 5.0 * gp  # μ = 5 (paper)

    def project_critic():
        torch.manual_seed(0)
        return Critic((w1, w2, w3))

    def make_step(net, loss_fn):
        return timed_step(net.parameters(), lambda: loss_fn(net), 1e-3)

    def proj_loss(critic):
        return wgan_gp_loss(critic, clean, noisy, alpha, 5.0)[0]

    variants = {
        "plain": make_step(Plain(), plain_loss),
        "project": make_step(project_critic(), proj_loss),
    }
    if native_bf16("cpu"):
        variants["project bf16"] = make_step(set_precision(project_critic(), "bf16"), proj_loss)
    critic = project_critic()
    return {
        "variants": variants,
        "flops": count_flops(lambda: proj_loss(critic).backward()),
        "net_parts": None,
        "note": "critic step; the project's critic already runs channels_last",
    }


def quality(epochs: int | None = None) -> dict:
    """The default DLW trial (source set ``tv``, seed 0, ``params.yaml``'s ``train.dlw``) trained
    in float32 and in bfloat16 from the same initial weights and batches, on the prepared
    ``data/clean`` tiles: the validation MPSNR of its best epoch with each source model."""
    import torch

    from pipeline.config import load_params
    from pipeline.methods.dlw import DLW

    torch.set_num_threads(1)  # a trial's thread (cpu: 1)
    params = load_params(ROOT / "params.yaml")
    p = params.train.sections["dlw"]
    context = {"seed": params.seed, "data_dir": str(ROOT / "data" / "clean"), "device": "cpu"}
    out = {}
    for precision in ("fp32", "bf16"):
        method = DLW(dataclasses.replace(p, precision=precision))
        config = {"variant": "tv", "seed_index": 0, **p.constants(), **method.trial_config()}
        trainer = method.trainer(config, context)
        t = time.perf_counter()
        for _ in range(epochs or p.epochs):
            trainer.run_epoch()
        best = max(trainer.history, key=lambda h: h["val_score"])
        out[precision] = {
            "seconds": time.perf_counter() - t,
            "best_epoch": best["epoch"],
            **{k: v for k, v in best.items() if k.startswith("val_mpsnr")},
            "layout": trainer.net.resolved()[0],
        }
        print(f"quality {precision}: {out[precision]}", flush=True)
    out["difference_db"] = {
        k: out["bf16"][k] - out["fp32"][k] for k in out["fp32"] if k.startswith("val_mpsnr")
    }
    return out


CASES = {"dlw": dlw_case, "guidance": guidance_case, "rg": rg_case, "alr": alr_case}


# --- the measurement ---------------------------------------------------------------------------


def machine_rates(threads: int) -> dict:
    """The GEMM rates at ``threads`` threads (bf16: None without native support)."""
    import torch

    from pipeline.methods.precision import native_bf16

    torch.set_num_threads(threads)
    return {"fp32": gemm_rate("fp32"), "bf16": gemm_rate("bf16") if native_bf16() else None}


def measure(method: str, size: str, threads: int, reps: int, warmup: bool = True) -> dict:
    """Interleaved steps of every variant: a warm-up each (``warmup``: at the paper size a step
    takes seconds and first-call costs are negligible, so none), then ``reps`` rounds; with one
    thread each step's thread CPU time too (every kernel runs in the calling thread, so it does
    not depend on what else the shared machine runs); the GEMM rates
    at the same thread count just before and after (the better of the two: a shared machine
    only ever slows it down)."""
    before = machine_rates(threads)
    Clock.timer = time.thread_time if threads == 1 else time.perf_counter
    cfg = SIZES[method][size]
    case = CASES[method](cfg, threads)
    variants = case["variants"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    parts: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    mem: dict[str, int] = dict.fromkeys(variants, 0)
    loss: dict[str, float] = {}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    first = 0 if warmup else 1
    for r in range(first, reps + 1):
        for name, step in variants.items():
            with PeakRSS() as peak:
                t, c = time.perf_counter(), time.thread_time()
                out = step(r)
                dt, dc = time.perf_counter() - t, time.thread_time() - c
            mem[name] = max(mem[name], peak.added)
            loss.setdefault(name, out["loss"])
            if r == 0:  # warm-up: first-call allocations, oneDNN primitives, FFT plans
                continue
            times[name].append(dt)
            cpu[name].append(dc)
            for k, v in out["parts"].items():
                parts[name].setdefault(k, []).append(v)
    after = machine_rates(threads)
    rates = {k: None if before[k] is None else max(before[k], after[k]) for k in before}
    wall = {v: statistics.median(t) for v, t in times.items()}
    # One thread: CPU time is the step's cost whatever the load; more: wall clock.
    med = {v: statistics.median(t) for v, t in cpu.items()} if threads == 1 else wall
    split = {v: {k: statistics.median(x) for k, x in p.items()} for v, p in parts.items()}
    net_parts = case["net_parts"]

    def net_time(v: str) -> float:
        return sum(split[v][k] for k in net_parts) if net_parts else med[v]

    flops = case["flops"]
    row = {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "threads": threads,
        "reps": reps,
        "note": case["note"],
        "median_s": med,
        "timing": "thread CPU time" if threads == 1 else "wall clock",
        "median_wall_s": wall,
        "split_s": split,
        "peak_rss_added_mb": {v: m / 2**20 for v, m in mem.items()},
        "warmup_loss": loss,
        "net_flops_per_step": flops,
        "net_gflop_s": {v: flops / net_time(v) / 1e9 for v in variants},
        "gemm_gflop_s": rates,
        "net_gemm_fraction": {v: flops / net_time(v) / 1e9 / rates["fp32"] for v in variants},
        "net_gemm_fraction_bf16": None
        if rates["bf16"] is None
        else {v: flops / net_time(v) / 1e9 / rates["bf16"] for v in variants},
        "loadavg": os.getloadavg(),
    }
    for v in variants:
        if v == "plain":
            continue
        key = {
            "project": "speedup_vs_plain",
            "project bf16": "speedup_vs_plain_bf16",
            "project checkpointed": "speedup_vs_plain_checkpointed",
        }.get(v, v.replace(" ", "_") + "_vs_plain")
        row[key] = med["plain"] / med[v]
    return row


def table(roof: dict) -> str:
    """The Markdown table the README quotes."""
    head = (
        "| method | size | threads | plain s | project s | speedup fp32 | bf16 speedup | "
        "net GFLOP/step | GEMM fp32 GFLOP/s | net GEMM fraction | "
        "peak RSS +MB plain / project | note |"
    )
    lines = [head, "|" + "---|" * 12]
    for method, sizes in roof["methods"].items():
        for size, per_threads in sizes.items():
            for threads, r in sorted(per_threads["by_threads"].items()):
                med, mem = r["median_s"], r["peak_rss_added_mb"]
                bf16 = r.get("speedup_vs_plain_bf16")
                bf16_cell = "no native bf16" if bf16 is None else f"{bf16:.2f}"
                lines.append(
                    f"| {method} | {size} | {threads} | {med['plain']:.3f} | "
                    f"{med['project']:.3f} | {r['speedup_vs_plain']:.2f} | {bf16_cell} | "
                    f"{r['net_flops_per_step'] / 1e9:.1f} | {r['gemm_gflop_s']['fp32']:.0f} | "
                    f"{r['net_gemm_fraction']['project']:.2f} | "
                    f"{mem['plain']:.0f} / {mem['project']:.0f} | {r['note']} |"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU default sizes only")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds at the default size")
    ap.add_argument("--paper-reps", type=int, default=1, help="timed rounds at the paper size")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--methods", nargs="+", default=list(CASES))
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "train_step.json",
        help="JSON to update (its other entries are kept)",
    )
    ap.add_argument(
        "--quality", action="store_true", help="also train the default DLW trial in fp32 and bf16"
    )
    args = ap.parse_args()

    import torch

    from pipeline.methods.precision import native_bf16

    out = args.out.resolve()
    previous = json.loads(out.read_text()) if out.is_file() else {}
    roof = previous.get("roofline", {})  # what this run does not measure is kept
    roof.setdefault("methods", {})
    threads_max = max(args.threads)
    roof["machine"] = {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "native_bf16": native_bf16(),
        # Transparent huge pages for torch's CPU allocations (c10 reads it): fewer page faults.
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", ""),
        "loadavg_at_start": os.getloadavg(),
    }
    sizes = ["default"] if args.quick else ["default", "paper"]
    for method in args.methods:
        for size in sizes:
            by_threads = {}
            for threads in args.threads:
                reps = args.reps if size == "default" else args.paper_reps
                t0 = time.perf_counter()
                r = measure(method, size, threads, reps, warmup=size == "default")
                by_threads[str(threads)] = r
                print(
                    f"{method:<9}{size:<8}{threads} thr: plain {r['median_s']['plain']:.3f} s, "
                    f"project {r['median_s']['project']:.3f} s, "
                    f"×{r['speedup_vs_plain']:.2f}, GEMM fp32 {r['gemm_gflop_s']['fp32']:.0f} "
                    f"GFLOP/s ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            # The headline: the default size at its trials' thread count (`cpu: 1` in
            # params.yaml, one torch thread each), the paper size at the most threads measured.
            head_threads = 1 if size == "default" and 1 in args.threads else threads_max
            head = by_threads[str(head_threads)]
            entry = {
                "headline_threads": head_threads,
                "speedup_vs_plain": head["speedup_vs_plain"],
                "net_gemm_fraction": head["net_gemm_fraction"]["project"],
                "by_threads": by_threads,
            }
            if "speedup_vs_plain_bf16" in head:
                entry["speedup_vs_plain_bf16"] = head["speedup_vs_plain_bf16"]
            if head["gemm_gflop_s"]["bf16"] is None:
                entry["bf16"] = "not measured: this CPU has no native bfloat16 (AVX-512-BF16/AMX)"
            roof["methods"].setdefault(method, {})[size] = entry
    if args.quality:
        roof["quality"] = quality()
    roof["machine"]["loadavg_at_end"] = os.getloadavg()
    roof["table"] = table(roof)
    print()
    print(roof["table"])
    from pipeline.io import write_bytes

    previous["roofline"] = roof
    write_bytes(out, (json.dumps(previous, indent=2) + "\n").encode("utf-8"))
    print(f"\nwrote {out} (roofline)")


if __name__ == "__main__":
    main()
