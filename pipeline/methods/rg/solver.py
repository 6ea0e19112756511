r"""Gradient descent with a learned regularising gradient, its fixed point, its Lipschitz constant
and the losses that train it (Willingham, Sjöström, Guillemot, "Regularising gradients for
multi-task image restoration", VISAPP 2024).

The map (one GD step on the weighted fidelity plus the learned gradient)

.. math:: T(x) = x - \tau_b\bigl(A^\top W (A x - y) + s\lambda\, G_\phi(x)\bigr),
          \qquad \tau_b = \frac{\tau}{\max(1, \max_i w_{b,i}, s)},

per sample (band) :math:`b`, with :math:`W = \operatorname{diag}(w)` on y's grid (``None``: 1)
and :math:`s` the strength multiplier. Its fixed points :math:`x^* = T(x^*)` solve
:math:`A^\top W(Ax^* - y) + s\lambda G_\phi(x^*) = 0` whatever the step, so :math:`\tau_b` only
sets the speed: it shrinks where the weights or the strength exceed their training values (1),
so that neither the fidelity nor the regulariser takes a larger step than in training. The
paper iterates up to 1500 times; here the fixed point is found to the relative change
:math:`\|T(x) - x\| / \|T(x)\| < \text{tol}` per sample (``max_iter`` evaluations at most) by
Anderson acceleration (Walker & Ni, SIAM J. Numer. Anal. 2011) — torchdeq's solver (Geng &
Kolter, "TorchDEQ", 2023) — or by the plain iteration :math:`x_{k+1} = T(x_k)`.

**Contraction and the bound.** If :math:`T` is :math:`L`-Lipschitz with :math:`L < 1`, its fixed
point is unique and for the clean :math:`\bar x`

.. math:: \|x^* - \bar x\| \le \|x^* - T(\bar x)\| + \|T(\bar x) - \bar x\|
          \le L\|x^* - \bar x\| + \|T(\bar x) - \bar x\|
          \;\Rightarrow\; \|x^* - \bar x\| \le \frac{\|T(\bar x) - \bar x\|}{1 - L}
          = \frac{\tau_b\|A^\top W(A\bar x - y) + \lambda G_\phi(\bar x)\|}{1 - L}.

:func:`lipschitz` estimates the local constant :math:`L = \|J_T(\bar x)\|_2` by power iterations
on :math:`J_T^\top J_T`, with :math:`J_T v = v - \tau_b(A^\top W A v + s\lambda J_G v)`
(forward-mode :func:`torch.func.jvp` for :math:`J_G v`, a vector-Jacobian product for
:math:`J_G^\top u`); the last half-step :math:`\|J_T^\top u\|`, :math:`u = J_T v/\|J_T v\|`, is
differentiable in :math:`\phi` and :math:`\lambda` (double backward) and never exceeds
:math:`\|J_T\|_2`. :func:`bound_loss` is the ``bound`` variant's loss (this project's
formulation; the paper's text of it was not available): per sample, with :math:`n_b` pixels,

.. math:: B_b = \frac{\|T(\bar x_b) - \bar x_b\| / \sqrt{n_b}}{1 - \min(L_b, c)},\qquad
          \ell_\text{bound} = \operatorname{mean}_\text{tasks}\operatorname{mean}_{b}\, B_b^2
          + \gamma\, \operatorname{mean}_b \max(0, L_b - c)^2,

the cap :math:`c` (``lipschitz_cap``) keeping the denominator positive, :math:`\gamma`
(``cap_penalty``) pushing :math:`L` back below it. :math:`B_b^2` bounds the MSE of
:math:`x^*_b` where :math:`L_b` is a global Lipschitz constant.

**Implicit differentiation** (``deqgd``): :func:`deq_solver` is torchdeq's DEQ with Anderson
forward and ``ift=True``: the fixed point is found without a graph, then one step
:math:`T(x^*)` is taken with the graph, and its backward solves
:math:`g = J_T(x^*)^\top g + \partial\ell/\partial x^*` (Anderson on vector-Jacobian products)
before :math:`g` flows through :math:`\partial T/\partial\phi` — memory flat in the number of
forward iterations (Bai, Kolter, Koltun, "Deep equilibrium models", NeurIPS 2019).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pipeline.degrade.operators import (
    Blur,
    Downsampling,
    Identity,
    Inpainting,
    LinearOperator,
    operator_kind,
)

__all__ = [
    "Group",
    "Problem",
    "bound_loss",
    "bound_value",
    "deq_solver",
    "fold_operator",
    "gd_map",
    "lipschitz",
    "power_lipschitz",
    "restore_cube",
    "solve",
    "start",
]

# Tikhonov term of Anderson's mixing least squares (torchdeq's default 1e-4 is absolute: near
# convergence it swamps the Gram matrix of the residuals, ‖r‖² ~ 1e-6 · pixels here, and the
# mixing degenerates to damped plain iteration; benchmarks/rg.py). Should the mixing's system
# still be singular (float32, residuals at rounding level), the solve falls back to the plain
# iteration from the start.
ANDERSON_LAM = 1e-8
# Bands through one solve at once: a batch of 8 single-band 32² images runs the convolutions
# ~2× faster per band than all 31 at once on one core (cache), and each chunk stops on its own.
CHUNK = 8


@dataclass
class Group:
    """Samples ``(n, 1, H, W)`` sharing an operator ``op``: data ``y`` (n, 1, h, w) on its grid and
    weights ``w`` of y's shape (``None``: 1)."""

    op: LinearOperator
    y: Tensor
    w: Tensor | None = None


class Problem:
    """:math:`y_g = A_g x_g + n` for consecutive groups of samples of a batch ``(N, 1, H, W)``."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        self.sizes = [len(g.y) for g in groups]

    def _apply(self, x: Tensor, fn: Callable[[Group, Tensor], Tensor]) -> Tensor:
        parts = torch.split(x, self.sizes)
        return torch.cat([fn(g, xg) for g, xg in zip(self.groups, parts, strict=True)])

    def data_grad(self, x: Tensor) -> Tensor:
        r""":math:`A^\top W (A x - y)`, group by group."""

        def one(g: Group, xg: Tensor) -> Tensor:
            r = g.op.A(xg) - g.y
            return g.op.A_adjoint(r if g.w is None else g.w * r)

        return self._apply(x, one)

    def normal(self, v: Tensor) -> Tensor:
        r""":math:`A^\top W A v` (the Jacobian of the data gradient, symmetric)."""

        def one(g: Group, vg: Tensor) -> Tensor:
            r = g.op.A(vg)
            return g.op.A_adjoint(r if g.w is None else g.w * r)

        return self._apply(v, one)

    def wmax(self) -> Tensor:
        """Per-sample largest weight ``(N, 1, 1, 1)`` (1 where unweighted)."""
        out = []
        for g in self.groups:
            if g.w is None:
                out.append(g.y.new_ones(len(g.y)))
            else:
                out.append(g.w.flatten(1).amax(1))
        return torch.cat(out)[:, None, None, None]

    def steps(self, tau: Tensor | float, strength: float = 1.0) -> Tensor:
        r""":math:`\tau_b = \tau / \max(1, \max w_b, s)`, ``(N, 1, 1, 1)``."""
        scale = self.wmax().clamp_min(max(1.0, float(strength)))
        return torch.as_tensor(tau).to(scale) / scale


def gd_map(net, problem: Problem, strength: float = 1.0) -> Callable[[Tensor], Tensor]:
    r"""The GD map :math:`T` of ``net`` (an :class:`~pipeline.methods.rg.net.RGNet`) on
    ``problem`` (module docstring), differentiable in the net's parameters."""
    tau_b = problem.steps(net.tau, strength)

    def T(x: Tensor) -> Tensor:
        return x - tau_b * (problem.data_grad(x) + strength * net.lam * net(x))

    return T


# --- the fixed point ----------------------------------------------------------------------------


def solve(
    T: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    solver: str = "anderson",
    max_iter: int = 100,
    tol: float = 1e-3,
    m: int = 5,
) -> tuple[Tensor, dict]:
    """The fixed point of ``T`` from ``x0`` without a graph: torchdeq's ``anderson`` or
    ``fixed_point_iter``, stopping when every sample's relative change is below ``tol``.
    Returns the estimate of smallest residual per sample and ``{"evaluations"`` (of T),
    ``"residual"`` (N,) relative changes, ``"converged"`` (N,) bool``}``."""
    from torchdeq.solver import get_solver

    count = [0]

    def counted(x: Tensor) -> Tensor:
        count[0] += 1
        return T(x)

    kwargs = {"max_iter": max_iter, "tol": tol, "stop_mode": "rel", "m": m, "lam": ANDERSON_LAM}
    with torch.no_grad():
        try:
            x, _, info = get_solver(solver)(counted, x0, **kwargs)
        except torch.linalg.LinAlgError:
            x, _, info = get_solver("fixed_point_iter")(counted, x0, **kwargs)
    residual = info["rel_lowest"].to(torch.float64)
    return x, {
        "evaluations": count[0],
        "residual": residual,
        "converged": residual < tol,
    }


def deq_solver(
    *, max_iter: int, tol: float, backward_max_iter: int, backward_tol: float, m: int = 5
) -> Callable[[Callable[[Tensor], Tensor], Tensor], tuple[Tensor, dict]]:
    """``fixed_point(T, x0) → (x*, info)`` by torchdeq's DEQ layer (module docstring): Anderson
    forward without a graph, the implicit gradient attached to ``x*``."""
    from torchdeq import get_deq

    def build(forward: str):
        return get_deq(
            core="sliced",
            ift=True,
            f_solver=forward,
            b_solver="anderson",
            f_max_iter=max_iter,
            b_max_iter=backward_max_iter,
            f_tol=tol,
            b_tol=backward_tol,
            f_stop_mode="rel",
            b_stop_mode="rel",
        ).train()

    deq, plain = build("anderson"), build("fixed_point_iter")

    def fixed_point(T: Callable[[Tensor], Tensor], x0: Tensor) -> tuple[Tensor, dict]:
        kwargs = {"m": m, "lam": ANDERSON_LAM}
        try:
            out, info = deq(T, x0.detach(), solver_kwargs=kwargs)
        except torch.linalg.LinAlgError:  # a singular mixing system (see ANDERSON_LAM)
            out, info = plain(T, x0.detach(), solver_kwargs=kwargs)
        return out[-1], info

    return fixed_point


# --- Lipschitz constant and the bound -----------------------------------------------------------


def _unit(v: Tensor) -> Tensor:
    return v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * (v.ndim - 1))


def power_lipschitz(
    jvp: Callable[[Tensor], Tensor],
    vjp: Callable[[Tensor], Tensor],
    v0: Tensor,
    iters: int,
) -> tuple[Tensor, Tensor]:
    r"""Per-sample :math:`\|J\|_2` of a batch of Jacobians (given as :math:`v \mapsto Jv` and
    :math:`u \mapsto J^\top u`) by ``iters`` power iterations on :math:`J^\top J` from ``v0``:
    ``(sigma (N,), u)`` with :math:`\sigma = \|J v_k\|` and :math:`u = J v_k / \|J v_k\|`."""
    v = _unit(v0)
    for _ in range(iters):
        v = _unit(vjp(jvp(v)))
    Jv = jvp(v)
    return Jv.flatten(1).norm(dim=1), _unit(Jv)


def lipschitz(
    net,
    problem: Problem,
    x: Tensor,
    v0: Tensor,
    iters: int,
    strength: float = 1.0,
    differentiable: bool = False,
) -> Tensor:
    r"""Per-sample estimate of :math:`L = \|J_T(x)\|_2` (module docstring), ``(N,)``. With
    ``differentiable`` the last half-step :math:`\|J_T^\top u\|` carries the graph to the net's
    parameters and λ; the iterations before it never do."""
    from torch.func import functional_call, jvp

    tau_b = problem.steps(net.tau, strength)
    x = x.detach()
    frozen = {k: p.detach() for k, p in net.named_parameters()}
    lam = strength * float(net.lam.detach())

    def G(z: Tensor) -> Tensor:
        return functional_call(net, frozen, (z,))

    def jvp_T(v: Tensor) -> Tensor:
        return v - tau_b * (problem.normal(v) + lam * jvp(G, (x,), (v,))[1])

    def vjp_T(u: Tensor, create_graph: bool = False) -> Tensor:
        with torch.enable_grad():
            xr = x.clone().requires_grad_(True)
            g = net(xr) if create_graph else G(xr)
            (jg,) = torch.autograd.grad(g, xr, u, create_graph=create_graph)
        scale = strength * net.lam if create_graph else lam
        return u - tau_b * (problem.normal(u) + scale * jg)

    with torch.no_grad():
        sigma, u = power_lipschitz(jvp_T, vjp_T, v0.to(x), iters)
    if not differentiable:
        return sigma
    return vjp_T(u.detach(), create_graph=True).flatten(1).norm(dim=1)


def bound_value(residual: Tensor, L: Tensor, cap: float) -> Tensor:
    r"""Per-sample :math:`B_b = r_b / (1 - \min(L_b, c))` (module docstring)."""
    return residual / (1 - L.clamp(max=cap))


def bound_loss(
    net,
    problem: Problem,
    clean: Tensor,
    v0: Tensor,
    *,
    iters: int,
    cap: float,
    penalty: float,
) -> tuple[Tensor, dict[str, float]]:
    r""":math:`\ell_\text{bound}` (module docstring) at the clean ``clean`` ``(N, 1, H, W)``,
    and its parts: ``bound`` (mean :math:`B_b^2`), ``lipschitz`` (mean :math:`L_b`)."""
    T = gd_map(net, problem)
    n = clean[0].numel()
    residual = (T(clean) - clean).flatten(1).norm(dim=1) / math.sqrt(n)
    L = lipschitz(net, problem, clean, v0, iters, differentiable=True)
    sq = bound_value(residual, L, cap) ** 2
    per_task = torch.stack([part.mean() for part in torch.split(sq, problem.sizes)])
    over = torch.relu(L - cap) ** 2
    loss = per_task.mean() + penalty * over.mean()
    return loss, {"bound": float(sq.detach().mean()), "lipschitz": float(L.detach().mean())}


# --- test time: a cube --------------------------------------------------------------------------


def fold_operator(A: LinearOperator | None, bands: int, index: slice) -> LinearOperator:
    """The operator of a cube's bands ``index`` folded into the batch, on ``(n, 1, H, W)``:
    convolutions and decimation act per band as they are; an inpainting mask of the cube
    (C, H, W) (or any shape broadcasting to it) becomes ``(n, 1, H, W)``."""
    kind = operator_kind(A)
    if kind == "identity":
        return Identity()
    if kind == "inpaint":
        mask = A.mask.detach()
        while mask.ndim > 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.ndim == 2:
            mask = mask.expand(bands, *mask.shape)
        if mask.ndim != 3 or mask.shape[0] not in (1, bands):
            raise ValueError(
                f"rg: an inpainting mask of shape {tuple(A.mask.shape)} for {bands} bands"
            )
        mask = mask.expand(bands, *mask.shape[1:])
        return Inpainting(mask[index, None].contiguous())
    return A


def start(y: np.ndarray, A: LinearOperator | None) -> np.ndarray:
    r""":math:`x_0` of a cube (C, h, w): y for denoising and deblurring, the normalised adjoint
    for super-resolution, normalised convolution for inpainting (float64)."""
    from pipeline.evaluate.operator_baselines import fill, upsample

    if isinstance(A, Downsampling):
        return upsample(y, A).astype(np.float64)
    if isinstance(A, Inpainting):
        return fill(y, A).astype(np.float64)
    return np.asarray(y, dtype=np.float64)


def restore_cube(
    net,
    y: np.ndarray,
    w: np.ndarray | None,
    strength: float,
    A: LinearOperator | None,
    *,
    solver: str = "anderson",
    max_iter: int = 100,
    tol: float = 1e-3,
    m: int = 5,
) -> tuple[np.ndarray, dict]:
    """The fixed point of the GD map for a cube ``y`` (C, h, w) (weights ``w`` of its shape or
    None) in float32, ``CHUNK`` bands at a time; a band whose solve is not finite keeps its
    start (``diverged`` counts them)."""
    t0 = time.perf_counter()
    if not isinstance(A, (type(None), Identity, Blur, Downsampling, Inpainting)):
        raise ValueError(f"rg restorer: unknown operator type {type(A).__name__}")
    x0 = start(y, A)
    bands = y.shape[0]
    device = next(net.parameters()).device
    out = np.empty(x0.shape, dtype=np.float32)
    evaluations, residual, converged, diverged = [], [], True, 0
    for i in range(0, bands, CHUNK):
        idx = slice(i, min(i + CHUNK, bands))
        yc = torch.from_numpy(np.ascontiguousarray(y[idx], np.float32))[:, None].to(device)
        wc = None
        if w is not None:
            wc = torch.from_numpy(np.ascontiguousarray(w[idx], np.float32))[:, None].to(device)
        problem = Problem([Group(fold_operator(A, bands, idx).to(device), yc, wc)])
        xc0 = torch.from_numpy(x0[idx].astype(np.float32))[:, None].to(device)
        x, info = solve(
            gd_map(net, problem, strength), xc0, solver=solver, max_iter=max_iter, tol=tol, m=m
        )
        bad = ~torch.isfinite(x.flatten(1)).all(1)
        if bad.any():
            x[bad] = xc0[bad]
            diverged += int(bad.sum())
        out[idx] = x[:, 0].cpu().numpy()
        evaluations.append(info["evaluations"])
        residual.append(info["residual"].cpu())
        converged &= bool(info["converged"].all()) and not bad.any()
    res = torch.cat(residual)
    return out, {
        "iterations": max(evaluations),
        "evaluations": int(sum(evaluations)),
        "converged": converged,
        "primal_residual": float(res[torch.isfinite(res)].max())
        if torch.isfinite(res).any()
        else math.nan,
        "diverged": diverged,
        "time": time.perf_counter() - t0,
    }
