r"""The hypergradient of the unrolled TV-family solve by its hand-written adjoint.

DLW differentiates the unrolled ADMM of its TV and TVS source models with respect to the
weight map :math:`w` (:mod:`pipeline.methods.dlw.bilevel`). Autograd through the iterations
records some forty elementary operations an iteration, keeps their inputs, and in the
backward pass runs as many again (negations, zero fills, concatenations of its own);
:class:`UnrolledTVAdjoint` runs the same forward iterations without recording them (the
iterates are bit-identical to :meth:`~pipeline.models.tv._TVFamily._unrolled_step`'s), keeps
only :math:`X^{k+1}` and the support of the shrinkage of every iteration, and runs the adjoint
recursion below (reverse-mode differentiation of the iteration written out by hand; e.g.
Griewank & Walther, *Evaluating Derivatives*, SIAM 2008, ch. 3).

One iteration (the reference order, :mod:`pipeline.models.tv`), with :math:`P =
(\mu_1 I + \mu_2 D^\top D)^{-1}` (self-adjoint) and :math:`r = 1/(w + \mu_1)`:

.. math::
    a &= DZ + \Lambda_2/\mu_2, \quad U = \operatorname{soft}(a, \lambda/\mu_2), \quad
    c = U - \Lambda_2/\mu_2,\\
    Z' &= P(\Lambda_1 + \mu_1 X + \mu_2 D^\top c), \quad (DZ)' = D Z', \quad
    X' = r\,(w y + \mu_1 Z' - \Lambda_1),\\
    \Lambda_1' &= \Lambda_1 + \mu_1 (X' - Z'), \quad \Lambda_2' = \Lambda_2 + \mu_2((DZ)' - U).

Given the adjoints :math:`\bar X', \overline{DZ}', \bar\Lambda_1', \bar\Lambda_2', \bar Z'` of
its outputs (:math:`\bar Z'` is the loss's gradient after the last iteration and zero before),
with :math:`m = [|a| > \lambda/\mu_2]`:

.. math::
    q &= r\,(\bar X' + \mu_1 \bar\Lambda_1'), \qquad \bar w \mathrel{+}= q\,(y - X'),\\
    \bar g &= P\big(\bar Z' - \mu_1 \bar\Lambda_1' + \mu_1 q
             + D^\top(\overline{DZ}' + \mu_2 \bar\Lambda_2')\big), \qquad
    \bar c = \mu_2 D \bar g, \qquad \bar a = m \odot (\bar c - \mu_2 \bar\Lambda_2'),\\
    \bar X &= \mu_1 \bar g, \quad \overline{DZ} = \bar a, \quad
    \bar\Lambda_1 = \bar\Lambda_1' - q + \bar g, \quad
    \bar\Lambda_2 = \bar\Lambda_2' + (\bar a - \bar c)/\mu_2 .

The start (:math:`X = Z = Y`, :math:`U = DY`, zero multipliers) does not depend on :math:`w`.
``tests/test_tv_adjoint.py`` checks the gradient against autograd through the iterations and
against finite differences; ``benchmarks/train_roofline.py`` times it inside the DLW step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["UnrolledTVAdjoint", "unrolled_tv"]


class UnrolledTVAdjoint(torch.autograd.Function):
    """``apply(w, y, model, ctx, side) -> Z`` after ``model.params.iterations`` unrolled
    iterations; differentiable in ``w`` only. ``ctx`` is the model's context prepared from the
    detached ``w``; ``side`` (a dict) receives the last two states and the last penalties, for
    the residuals a solve reports: constants, except the returned ``Z`` (a caller that wants a
    gradient through another state variable gets the autograd path by not asking for this one).
    Only first derivatives (``once_differentiable``).

    Both passes work on buffers allocated once: every operation of
    :meth:`~pipeline.models.tv._TVFamily._unrolled_step` is repeated with ``out=`` or in place
    (the same kernels on the same operands, so the iterates are bit-identical), and only
    :math:`Z` and :math:`X` are fresh each iteration (the FFT solve returns :math:`Z`;
    :math:`X` is kept for the backward pass)."""

    @staticmethod
    def forward(fctx, w: Tensor, y: Tensor, model: Any, ctx: Any, side: dict) -> Tensor:
        lam, n_it = model.params.lam, model.params.iterations
        D, solve, wy, wd = ctx.D, ctx.solve, ctx.wy, ctx.w
        x, z = ctx.y, ctx.y  # the start: X = Z = Y (read only), U = DZ = DY, Λ = 0
        dz = D(ctx.y)
        u, a, l2 = dz.clone(), torch.empty_like(dz), torch.zeros_like(dz)
        l1, t1, t2 = torch.zeros_like(x), torch.empty_like(x), torch.empty_like(x)
        xs, masks, mus = [], [], []
        old = mu = None
        for k in range(n_it):
            mu = mu1, mu2 = model._mu(ctx, k)
            if k == n_it - 1:  # the state before the last step, for the dual residual
                old = {"x": x, "z": z, "u": u.clone(), "dz": dz.clone(), "l1": l1.clone()}
                old["l2"] = l2.clone()
            # U = soft(DZ + Λ₂/μ₂, λ/μ₂)
            torch.add(dz, l2, alpha=1.0 / mu2, out=a)
            torch.ops.aten.softshrink.out(a, lam / mu2, out=u)
            # soft(a, t) is 0 exactly where |a| ≤ t (a − t > 0 whenever a > t in IEEE
            # arithmetic), so U ≠ 0 is the support of the shrinkage's derivative.
            masks.append(u.ne(0))
            # Z = P((Λ₁ + μ₁X) + μ₂ Dᵀ(U − Λ₂/μ₂)), DZ
            torch.sub(u, l2, alpha=1.0 / mu2, out=a)
            D.adjoint_into(a, t2, scratch=t1)
            torch.add(l1, x, alpha=mu1, out=t1)
            z = solve(torch.add(t1, t2, alpha=mu2, out=t1), mu1, mu2)
            D.into(z, dz)
            # X = ((wy + μ₁Z) − Λ₁) / (w + μ₁), fresh: the backward pass reads it
            x = torch.add(wy, z, alpha=mu1).sub_(l1).div_(torch.add(wd, mu1, out=t2))
            # Λ₁ += μ₁(X − Z), Λ₂ += μ₂(DZ − U)
            l1.add_(torch.sub(x, z, out=t2), alpha=mu1)
            l2.add_(torch.sub(dz, u, out=a), alpha=mu2)
            xs.append(x)
            mus.append(mu)
        side.update(state={"x": x, "z": z, "u": u, "dz": dz, "l1": l1, "l2": l2}, old=old, mu=mu)
        fctx.D, fctx.solve, fctx.mus = D, solve, mus
        fctx.save_for_backward(w.detach(), y, *xs, *masks)
        return z

    @staticmethod
    @once_differentiable  # the recursion itself is not recorded: no second derivatives
    def backward(fctx, gz_out: Tensor):
        w, y, *rest = fctx.saved_tensors
        n = len(fctx.mus)
        xs, masks = rest[:n], rest[n:]
        D, solve = fctx.D, fctx.solve
        # Adjoints of the state after iteration k (zero after the last): X, Λ₁, DZ, Λ₂.
        gw, gx, gl1 = (torch.zeros_like(w) for _ in range(3))
        gdz = torch.zeros_like(masks[0], dtype=w.dtype)
        gl2, td = torch.zeros_like(gdz), torch.empty_like(gdz)
        q, gz, t1, t2 = (torch.empty_like(w) for _ in range(4))
        for k in range(n - 1, -1, -1):
            mu1, mu2 = fctx.mus[k]
            # q = (X̄' + μ₁Λ̄₁') / (w + μ₁);  w̄ += q (y − X')
            torch.add(gx, gl1, alpha=mu1, out=q).div_(torch.add(w, mu1, out=t1))
            gw.addcmul_(q, torch.sub(y, xs[k], out=t1))
            # Z̄ = Z̄' + μ₁(q − Λ̄₁') + Dᵀ(DZ̄' + μ₂Λ̄₂')
            torch.sub(q, gl1, out=gz).mul_(mu1)
            if k == n - 1:
                gz.add_(gz_out)
            gz.add_(D.adjoint_into(torch.add(gdz, gl2, alpha=mu2, out=td), t2, scratch=t1))
            g = solve(gz, mu1, mu2)  # P is self-adjoint
            # c̄ = μ₂ D ḡ;  ā = m ⊙ (c̄ − μ₂Λ̄₂') = DZ̄;  Λ̄₂ = Λ̄₂' + (ā − c̄)/μ₂
            D.into(g, td).mul_(mu2)
            torch.sub(td, gl2, alpha=mu2, out=gdz).mul_(masks[k])
            gl2.add_(torch.sub(gdz, td, out=td), alpha=1.0 / mu2)
            # Λ̄₁ = Λ̄₁' − q + ḡ;  X̄ = μ₁ ḡ
            gl1.sub_(q).add_(g)
            torch.mul(g, mu1, out=gx)
        return gw, None, None, None, None


def unrolled_tv(model: Any, y: Tensor, w: Tensor) -> tuple[Any, dict]:
    """``(ctx, side)`` of the unrolled solve of ``model`` (a TV-family model) through
    :class:`UnrolledTVAdjoint`: ``side["state"]`` is the final state, whose ``"z"`` is the
    differentiable output."""
    ctx = model._prepare(y, w.detach())
    side: dict = {}
    z = UnrolledTVAdjoint.apply(w, y, model, ctx, side)
    side["state"] = {**side["state"], "z": z}
    return ctx, side
