r"""Singular value thresholding with a gradient that stays finite everywhere.

For a matrix :math:`M` with SVD :math:`M = U \operatorname{diag}(\sigma) V^\top`,

.. math:: \operatorname{SVT}_\tau(M) = U \operatorname{diag}\big((\sigma - \tau)_+\big) V^\top
          = \operatorname*{argmin}_Z\ \tau \|Z\|_* + \tfrac12 \|Z - M\|_F^2

(Cai, Candès, Shen, "A singular value thresholding algorithm for matrix completion", SIAM J.
Optim. 20(4), 2010). The derivative of ``torch.linalg.svd`` contains
:math:`1/(\sigma_i^2 - \sigma_j^2)` and is NaN or infinite as soon as two singular values repeat
or vanish, which is the common case for image cubes (a flat cube is rank 1 with 30 zero singular
values). SVT itself is smooth there, so we differentiate it through a spectral function instead.

For :math:`M \in \mathbb{R}^{C \times N}` with :math:`C \le N` (``C`` bands, ``N`` pixels) and the
small Gram matrix :math:`G = M M^\top = U \operatorname{diag}(\lambda) U^\top`,
:math:`\lambda = \sigma^2`,

.. math:: \operatorname{SVT}_\tau(M) = H(G)\, M, \qquad
          H(G) = U \operatorname{diag}\big(h(\lambda)\big) U^\top, \qquad
          h(\lambda) = \max\big(1 - \tau/\sqrt{\lambda},\ 0\big).

:math:`H` is a spectral matrix function of a symmetric matrix. Its derivative is the
Daleckii–Krein formula :math:`dH = U \big(F \circ (U^\top dG\, U)\big) U^\top` with the divided
differences :math:`F_{ij} = (h(\lambda_i) - h(\lambda_j)) / (\lambda_i - \lambda_j)` and
:math:`F_{ii} = h'(\lambda_i)` (Bhatia, *Matrix Analysis*, Thm. V.3.3; the same divided differences
appear in the SVT derivative of Candès, Sing-Long, Trzasko, "Unbiased risk estimates for singular
value thresholding and spectral estimators", IEEE TSP 61(19), 2013). Where
:math:`\lambda_i \approx \lambda_j` the quotient is replaced by :math:`h'` at the midpoint, its
limit; :math:`h' = 0` below the threshold (:math:`\sqrt\lambda \le \tau`), so zero and repeated
singular values give finite, exact derivatives, and the result does not depend on which
eigenbasis ``eigh`` picks inside a repeated eigenvalue. Only the kink
:math:`\sigma_i = \tau` itself is non-differentiable (one-sided derivative used), as for any
soft threshold.

The Gram matrix and its ``eigh`` are computed in float64 whatever the input dtype: forming
:math:`M M^\top` squares the condition number, and float64 keeps singular values accurate to
:math:`\approx 10^{-8}\sigma_{\max}` (float32 would only give :math:`\approx 3\cdot 10^{-4}
\sigma_{\max}`). The product :math:`H M` is taken in the input dtype. For :math:`C > N` the
transpose is thresholded. Cost per matrix: :math:`O(C^2 N)` for the Gram matrix and the product,
:math:`O(C^3)` for ``eigh`` — no SVD of the :math:`C \times N` matrix. ``eigh`` runs on one
matrix at a time (:mod:`pipeline.models.linalg`), so a matrix's result does not depend on the
rest of its batch; :math:`H` is a spectral function of :math:`G`, so the eigenbasis chosen inside
a repeated eigenvalue (and the signs of the eigenvectors) do not change it either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.models import linalg

__all__ = ["shrinkage_gram", "svt", "svt_reference"]


def _h(lam: Tensor, tau: float) -> Tensor:
    s = lam.clamp_min(tau * tau).sqrt()  # h = 0 for √λ ≤ τ: clamp avoids 1/0 at λ = 0
    return (1.0 - tau / s).clamp_min(0.0)


def _h_prime(lam: Tensor, tau: float) -> Tensor:
    s = lam.clamp_min(tau * tau).sqrt()
    return torch.where(s > tau, tau / (2.0 * s**3), torch.zeros_like(s))


class _GramShrink(torch.autograd.Function):
    r""":math:`G \mapsto H(\operatorname{sym} G)` for a batch of square matrices (float64)."""

    @staticmethod
    def forward(ctx, gram: Tensor, tau: float) -> Tensor:
        sym = 0.5 * (gram + gram.mT)
        lam, vec = linalg.eigh(sym)  # one matrix at a time: independent of the batch
        out = (vec * _h(lam, tau).unsqueeze(-2)) @ vec.mT
        ctx.save_for_backward(lam, vec)
        ctx.tau = tau
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        lam, vec = ctx.saved_tensors
        tau = ctx.tau
        li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
        diff = li - lj
        # Below this gap the quotient loses more to cancellation (≈ ε/gap) than the midpoint
        # derivative loses to curvature (≈ h''·gap): the crossover is near √ε relative.
        scale = lam.abs().amax(dim=-1, keepdim=True).unsqueeze(-1).clamp_min(tau * tau)
        close = diff.abs() <= 1e-7 * scale
        hi, hj = _h(li, tau), _h(lj, tau)
        quotient = (hi - hj) / torch.where(close, torch.ones_like(diff), diff)
        midpoint = _h_prime(0.5 * (li + lj), tau)
        divided = torch.where(close, midpoint, quotient)
        sym_grad = 0.5 * (grad + grad.mT)
        inner = vec.mT @ sym_grad @ vec
        return vec @ (divided * inner) @ vec.mT, None


def shrinkage_gram(gram: Tensor, tau: float) -> Tensor:
    r""":math:`H(G) = U \operatorname{diag}(\max(1 - \tau/\sqrt{\lambda}, 0)) U^\top` for symmetric
    positive semi-definite ``gram`` ``(..., C, C)``, with the Daleckii–Krein backward."""
    return _GramShrink.apply(gram, float(tau))


def svt(m: Tensor, tau: float) -> Tensor:
    r"""Singular value thresholding :math:`\operatorname{SVT}_\tau` of each matrix of ``m``
    ``(..., C, N)``: singular values shrunk by ``tau > 0``, finite gradients everywhere."""
    tau = float(tau)
    if not tau > 0:
        raise ValueError(f"tau = {tau}: the threshold must be positive")
    if m.shape[-2] > m.shape[-1]:
        return svt(m.mT, tau).mT
    m64 = m.to(torch.float64)
    gram = m64 @ m64.mT
    return shrinkage_gram(gram, tau).to(m.dtype) @ m


def svt_reference(m: Tensor, tau: float) -> Tensor:
    """SVT by ``torch.linalg.svd``: the textbook formula, for tests (its gradient is NaN at
    repeated or zero singular values)."""
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return (u * (s - tau).clamp_min(0.0).unsqueeze(-2)) @ vh
