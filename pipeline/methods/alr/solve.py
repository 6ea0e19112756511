r"""Restoration with the adversarial local regulariser: Adam on the image (Prost, Houdard, Almansa,
Papadakis, SSVM 2021, "ALR").

For :math:`y = A x + n` and fidelity weights :math:`w \ge 0` (one per entry of :math:`y`),

.. math:: \hat x \approx \operatorname{argmin}_x\ \tfrac12 \sum_i w_i (A x - y)_i^2
          + \lambda\, N\, R(x),\qquad
          R(x) = \operatorname{mean}_{b,\,i,\,j}\ r_\theta\big(P(x_b)\big)_{ij},

with :math:`N` the number of entries of :math:`x` (so :math:`\lambda` is a per-pixel weight, the
same for any image size and band count), :math:`r_\theta` the critic's map of 15×15 patches on
the stride-3 grid (:class:`pipeline.methods.alr.net.Critic`), every band :math:`x_b` on its own,
and :math:`P` the reflection padding by 7 pixels (replication for a side under 8). The critic
scores noisy patches high, so :math:`R` pulls :math:`x` towards clean patches.

*Why the padding.* Without it a pixel near the border lies in fewer patches (a corner in one,
an inner pixel in 16–25) and is barely regularised; the last rows and columns outside the
stride-3 grid not at all (4 of 32 rows of a 32×32 tile). The paper instead weights its fidelity
by each pixel's patch count; the benchmark's fidelity is :math:`\tfrac12 \sum w (Ax - y)^2` with
the weighting under test, so the regulariser is made uniform instead: with 7 reflected pixels
every pixel of :math:`x` is in the patches of the padded image.

Solver (the paper's): :math:`K` Adam steps from :math:`x_0`, the step size decaying
exponentially from ``lr[0]`` at the first step to ``lr[1]`` at the last (denoising 70 steps,
0.01 → 0.001; deblurring 50 steps, 0.1 → 0.01). :math:`x_0 = y` for denoising and deblurring,
the normalised adjoint :math:`A^\top y \oslash A^\top A \mathbf 1` for down-sampling and the
normalised convolution for inpainting (:mod:`pipeline.evaluate.operator_baselines`). A fixed
number of steps, no stopping rule: the result is deterministic given the inputs, and
``converged`` is reported True.

Every band and every folded image is its own problem: Adam acts entry-wise and the objective is
a sum over bands, so a batch of images is solved exactly as each alone would be.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.methods.alr.net import ALRPart, Critic
from pipeline.methods.alr.params import PATCH
from pipeline.methods.base import check_restore_inputs

__all__ = ["PAD", "pad", "regulariser", "restore_cube", "solve", "start"]

PAD = PATCH // 2  # 7: every pixel of x is then inside a patch of the padded image


def pad(x: Tensor) -> Tensor:
    """``(N, 1, H, W)`` padded by 7 pixels on each side: reflection, or replication when a side
    is under 8 pixels (reflection needs the pad to be smaller than the side)."""
    mode = "reflect" if min(x.shape[-2:]) > PAD else "replicate"
    return F.pad(x, (PAD, PAD, PAD, PAD), mode=mode)


def regulariser(critic: Critic, x: Tensor) -> Tensor:
    """:math:`R` per image: the mean of the critic's map of the padded image, ``(N,)``."""
    return critic(pad(x)).flatten(1).mean(1)


def solve(
    critic: Critic,
    y: Tensor,
    lam: float | Tensor,
    x0: Tensor,
    iterations: int,
    lr: tuple[float, float],
    w: Tensor | None = None,
    forward: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    r"""The module's Adam iterations on ``N`` single-band images ``x0`` ``(N, 1, H, W)`` for the
    data ``y`` (shape of ``forward(x)``, ``x`` itself without ``forward``), weights ``w`` (None:
    1) and λ (a number or one per image, ``(N,)``). The critic's weights get no gradient."""
    if iterations < 1:
        raise ValueError(f"alr: iterations must be ≥ 1, got {iterations}")
    lam_t = torch.as_tensor(lam, dtype=x0.dtype, device=x0.device).reshape(-1)
    if lam_t.numel() not in (1, len(x0)):
        raise ValueError(f"alr: λ must be a number or one per image ({len(x0)}), got {lam_t.shape}")
    pixels = x0.shape[-2] * x0.shape[-1]
    x = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr[0])
    ratio = lr[1] / lr[0]
    for k in range(iterations):
        opt.param_groups[0]["lr"] = lr[0] * ratio ** (k / max(iterations - 1, 1))
        ax = x if forward is None else forward(x)
        r = (ax - y) ** 2 if w is None else w * (ax - y) ** 2
        # Σ_b λ_b · (H W) · R(x_b) = λ N R(x) for one λ: the module's objective, band by band.
        loss = 0.5 * r.sum() + pixels * (lam_t * regulariser(critic, x)).sum()
        (x.grad,) = torch.autograd.grad(loss, x)  # not into the critic's weights
        opt.step()
    return x.detach()


def start(y: np.ndarray, A) -> np.ndarray:
    """:math:`x_0` of a (C, h, w) observation: ``y`` (denoising, blur), the normalised adjoint
    (down-sampling) or the normalised convolution (inpainting), float32 (C, H, W)."""
    from pipeline.degrade.operators import operator_kind
    from pipeline.evaluate.operator_baselines import fill, upsample

    kind = operator_kind(A)
    if kind == "downsample":
        return np.asarray(upsample(y, A), dtype=np.float32)
    if kind == "inpaint":
        return np.asarray(fill(y, A), dtype=np.float32)
    return np.asarray(y, dtype=np.float32)


def restore_cube(
    part: ALRPart, noisy: np.ndarray, w: np.ndarray | None, strength: float, A=None
) -> tuple[np.ndarray, dict]:
    """The restoration of a (C, h, w) observation with λ = ``strength`` × the part's λ, bands
    folded into the batch: float32 (C, H, W) and the diagnostics."""
    from pipeline.degrade.operators import operator_kind

    y, w = check_restore_inputs("alr restorer", noisy, w, strength)
    kind = operator_kind(A)
    iterations, lr0, lr1 = part.schedule(operator=kind != "identity")
    x0 = start(y, A)
    c, hh, ww = x0.shape
    if min(hh, ww) < 1:
        raise ValueError(f"alr restorer: empty image {x0.shape}")
    device = part.lam.device
    yt = torch.from_numpy(y).to(device)[:, None]
    wt = None if w is None else torch.from_numpy(w).to(device)[:, None]
    forward = None
    if A is not None and kind != "identity":
        op = A.to(device)

        probe = op.A(torch.zeros(1, c, hh, ww, device=device))
        if tuple(probe.shape[-3:]) != y.shape or probe.numel() != y.size:
            raise ValueError(
                f"alr restorer: A maps x {x0.shape} to {tuple(probe.shape)}, not y {y.shape}"
            )

        def forward(x: Tensor) -> Tensor:
            return op.A(x.reshape(1, c, hh, ww)).reshape(yt.shape)

    lam = float(part.lam) * float(strength)
    x = solve(
        part.critic,
        yt,
        lam,
        torch.from_numpy(x0).to(device)[:, None],
        iterations,
        (lr0, lr1),
        wt,
        forward,
    )
    return x[:, 0].cpu().numpy().astype(np.float32), {"iterations": iterations, "converged": True}
