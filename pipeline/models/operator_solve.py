r"""The factorisation :math:`A = S K` of a forward operator and the :math:`Z`-solves of the
TV family's ADMM with that operator (:mod:`pipeline.models.tv`).

Factorisation
-------------
Every operator of :mod:`pipeline.degrade.operators` is a selection :math:`S` after a
convolution :math:`K`, with :math:`S^\top S` diagonal (so that a weighted fidelity on
:math:`S X` stays pointwise in :math:`X`):

==========================  ============================  ==================================
operator                    :math:`S`                     :math:`K`
==========================  ============================  ==================================
``Identity``                :math:`I`                     none
``Blur(k, padding)``        :math:`I`                     the blur
``Inpainting(M)``           :math:`\operatorname{diag}(M)`  none
``Downsampling(f, ...)``    decimation :math:`S_f`        its anti-aliasing filter (or none)
any other square operator   :math:`I`                     the operator itself (CG only)
==========================  ============================  ==================================

:math:`Z`-solves
----------------
The linear step is :math:`(\mu_1 K^\top K + \mu_2 D^\top D)\, Z = b`:

* no :math:`K`: :math:`(\mu_1 I + \mu_2 D^\top D)^{-1}`, the exact solver of the denoising
  model (:func:`pipeline.models.neumann_solve.linear_solver`);
* a circular blur :math:`K` and a :math:`D` that is periodic along every spatial axis it
  differences: :math:`K^\top K` is diagonal in the 2-D DFT with eigenvalues
  :math:`|\hat k|^2` (Hansen, Nagy, O'Leary, *Deblurring Images*, SIAM 2006), and so is a
  periodic spatial :math:`D^\top D`; a spectral :math:`D` (along the band axis, which the blur
  does not touch) is diagonal in the band axis' DFT (periodic) or DCT-II (Neumann;
  :mod:`~pipeline.models.neumann_solve`), so the operator is the Kronecker sum
  :math:`\mu_1 I_C \otimes K^\top K + \mu_2 D_b^\top D_b \otimes I_{HW}`, diagonal in
  (band transform) :math:`\otimes` (2-D DFT), and

  .. math:: Z = T^{-1} \frac{T b}{\mu_1 |\hat k|^2 + \mu_2 \sum_d \lambda_d}

  exactly (:class:`FourierSolver`);
* otherwise (a zero-boundary blur, or a circular blur with spatial Neumann differences, whose
  :math:`D^\top D` is diagonal in the DCT but :math:`K^\top K` is not): conjugate gradients
  (Hestenes & Stiefel, "Methods of conjugate gradients for solving linear systems", J. Res.
  Nat. Bur. Standards 49(6), 1952) on the symmetric positive definite operator (definite as
  long as :math:`K` does not annihilate constants, the null space of :math:`D`), preconditioned
  for a blur by the exact Fourier solve of the same problem with periodic boundaries
  (:func:`circulant_preconditioner`), warm-started from the previous :math:`Z` and stopped per
  sample once the residual has dropped by the factor ``tol`` from the warm start's,
  :math:`\|b - M Z\| \le \mathrm{tol}\, \|b - M Z_{\text{prev}}\|`
  (floored at 10 machine epsilons of :math:`\|b\|`), or after a cap of iterations
  (:class:`ConjugateGradientSolver`). ADMM with inexact minimisations converges when the errors are
  summable (Eckstein & Bertsekas, "On the Douglas–Rachford splitting method and the proximal point
  algorithm for maximal monotone operators", Math. Programming 55, 1992). A tolerance relative to
  :math:`\|b\|` would leave an error floor that blocks tight outer tolerances (1e-7 of :math:`\|b\|`
  stalled the outer residuals above 1e-9); relative to the warm start, the error shrinks with the
  outer steps, and near convergence the inner solve takes a few iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.degrade.operators import Blur, Downsampling, Identity, Inpainting, LinearOperator
from pipeline.models.differences import FiniteDifference
from pipeline.models.neumann_solve import dct_matrix, linear_solver

__all__ = [
    "ConjugateGradientSolver",
    "Factorisation",
    "FourierSolver",
    "OperatorSolve",
    "circulant_preconditioner",
    "factorise",
    "operator_solver",
]

SPATIAL = (-2, -1)

# solve(b, mu1, mu2, z0): z0 is the warm start (used by conjugate gradients only).
OperatorSolve = Callable[[Tensor, float, float, Tensor], Tensor]


@dataclass(frozen=True)
class Factorisation:
    r""":math:`A = S K`: ``S`` a selection with diagonal :math:`S^\top S` (``None``: the
    identity), ``K`` a square operator on the full grid (``None``: the identity)."""

    S: LinearOperator | None
    K: LinearOperator | None


def factorise(A: LinearOperator) -> Factorisation:
    """:math:`A = S K` (module docstring)."""
    if isinstance(A, Identity):
        return Factorisation(None, None)
    if isinstance(A, Blur):
        return Factorisation(None, A)
    if isinstance(A, Inpainting):
        return Factorisation(A, None)
    if isinstance(A, Downsampling):
        return Factorisation(Downsampling(A.factor, None, A.padding), A.filter)
    return Factorisation(None, A)


def fourier_applies(D: FiniteDifference, K: LinearOperator | None) -> bool:
    """Whether :class:`FourierSolver` solves exactly: a circular blur, and ``D`` periodic if it
    differences a spatial axis."""
    if not (isinstance(K, Blur) and K.padding == "circular"):
        return False
    return D.boundary == "periodic" or not set(D.dims) & set(SPATIAL)


class FourierSolver:
    r""":math:`(\mu_1 K^\top K + \mu_2 D^\top D)^{-1} b` for a circular blur :math:`K`, by the
    2-D DFT over the spatial axes and, for a spectral :math:`D`, the DFT (periodic) or the DCT-II
    (Neumann) along the bands (module docstring)."""

    def __init__(self, D: FiniteDifference, K: Blur, shape, dtype, device) -> None:
        if not fourier_applies(D, K):
            raise ValueError(f"{D!r} with {K!r}: no exact Fourier solve")
        ndim = len(shape)
        band_dims = [d for d in D.dims if d not in SPATIAL]
        self.dct = [] if D.boundary == "periodic" else band_dims  # DCT axes (Neumann bands)
        self.q = [dct_matrix(shape[d])[0].to(dtype=dtype, device=device) for d in self.dct]
        self.fft_dims = tuple(sorted({*SPATIAL, *(d for d in D.dims if d not in self.dct)}))
        self.sizes = [shape[d] for d in self.fft_dims]
        symbol = None
        for d in D.dims:
            n = shape[d]
            if d in self.dct:
                lam = dct_matrix(n)[1]
            else:  # rfftn halves the last transformed axis (-1)
                k = torch.arange(n // 2 + 1 if d == -1 else n, dtype=torch.float64)
                lam = 4.0 * torch.sin(torch.pi * k / n) ** 2
            view = [1] * ndim
            view[ndim + d] = lam.numel()
            lam = lam.to(dtype=dtype, device=device).view(view)
            symbol = lam if symbol is None else symbol + lam
        self.k2 = _kernel_symbol(K, shape[-2:], dtype, device)
        self.symbol = symbol

    def _bands(self, x: Tensor, inverse: bool) -> Tensor:
        for d, q in zip(self.dct, self.q, strict=True):
            x = (x.movedim(d, -1) @ (q if inverse else q.mT)).movedim(-1, d)
        return x

    def __call__(self, b: Tensor, mu1: float, mu2: float, z0: Tensor | None = None) -> Tensor:
        spec = torch.fft.rfftn(self._bands(b, False), dim=self.fft_dims)
        spec = spec / (mu1 * self.k2 + mu2 * self.symbol)
        return self._bands(torch.fft.irfftn(spec, s=self.sizes, dim=self.fft_dims), True)


class ConjugateGradientSolver:
    r""":math:`(\mu_1 K^\top K + \mu_2 D^\top D)^{-1} b` by (preconditioned) conjugate
    gradients, per sample (each sample has its own step sizes and stops on its own residual, so
    a batch gives the per-sample results), warm-started from ``z0``, until
    :math:`\|b - M z\| \le \max(\mathrm{tol}\,\|b - M z_0\|,\ 10\,\epsilon\,\|b\|)`
    (:math:`\epsilon` the dtype's machine epsilon: below that the recursive residual is
    rounding noise) or ``max_iterations``. ``preconditioner(r, mu1, mu2)`` applies a symmetric
    positive definite approximation of :math:`M^{-1}` (``None``: plain CG)."""

    def __init__(
        self,
        D: FiniteDifference,
        K: LinearOperator,
        tol: float,
        max_iterations: int,
        preconditioner: Callable[[Tensor, float, float], Tensor] | None = None,
    ):
        self.D, self.K = D, K
        self.tol, self.max_iterations = tol, max_iterations
        self.preconditioner = preconditioner
        self._k2: Tensor | None = None  # |k̂|² of a circular blur, on first use
        self.iterations = 0  # of the last call (largest over the batch), for diagnostics
        self.total_iterations = 0  # over all calls, for diagnostics

    def _precondition(self, r: Tensor, mu1: float, mu2: float) -> Tensor:
        return r if self.preconditioner is None else self.preconditioner(r, mu1, mu2)

    def gram(self, z: Tensor, mu1: float, mu2: float) -> Tensor:
        return mu1 * self._kernel_gram(z) + mu2 * self.D.adjoint(self.D(z))

    def _kernel_gram(self, z: Tensor) -> Tensor:
        r""":math:`K^\top K z`; for a circular blur one FFT pair with :math:`|\hat k|^2` instead
        of two, each recomputing :math:`\hat k`."""
        K = self.K
        if not (isinstance(K, Blur) and K.padding == "circular"):
            return K.A_adjoint(K.A(z))
        if self._k2 is None or self._k2.dtype != z.dtype or self._k2.shape[-2] != z.shape[-2]:
            self._k2 = _kernel_symbol(K, z.shape[-2:], z.dtype, z.device)
        return torch.fft.irfft2(torch.fft.rfft2(z) * self._k2, s=z.shape[-2:])

    def __call__(self, b: Tensor, mu1: float, mu2: float, z0: Tensor) -> Tensor:
        view = (-1,) + (1,) * (b.ndim - 1)
        z = z0
        r = b - self.gram(z, mu1, mu2)
        rr = _dot(r, r)
        floor = 10 * torch.finfo(b.dtype).eps * b.flatten(1).norm(dim=1)
        stop = torch.maximum(self.tol * rr.sqrt(), floor) ** 2
        h = self._precondition(r, mu1, mu2)
        rh = _dot(r, h)
        p = h
        self.iterations = 0
        for _ in range(self.max_iterations):
            active = rr > stop
            if not bool(active.any()):
                break
            self.iterations += 1
            mp = self.gram(p, mu1, mu2)
            pmp = _dot(p, mp)
            # A stopped sample takes no step (α = 0): its z and r stay as they are.
            alpha = torch.where(active, rh / torch.where(active, pmp, 1), 0).view(view)
            z = z + alpha * p
            r = r - alpha * mp
            rr = _dot(r, r)
            h = self._precondition(r, mu1, mu2)
            rh_new = _dot(r, h)
            beta = torch.where(active, rh_new / torch.where(active, rh, 1), 0).view(view)
            p = h + beta * p
            rh = rh_new
        self.total_iterations += self.iterations
        return z


def _kernel_symbol(K: Blur, size, dtype, device) -> Tensor:
    r""":math:`|\hat k|^2` of a circular blur on the ``rfft2`` grid of ``size`` ``(H, W // 2 + 1)``
    (broadcasts against any leading axes): the DFT of :math:`K` applied to a unit impulse at the
    origin."""
    delta = torch.zeros(tuple(size), dtype=dtype, device=device)
    delta[0, 0] = 1
    return torch.fft.rfft2(K.A(delta[None, None])[0, 0]).abs() ** 2


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def operator_solver(
    D: FiniteDifference,
    K: LinearOperator | None,
    shape,
    dtype,
    device,
    *,
    method: str = "auto",
    cg_tol: float = 1e-2,
    cg_max_iterations: int = 100,
) -> OperatorSolve:
    r"""``solve(b, mu1, mu2, z0)`` :math:`= (\mu_1 K^\top K + \mu_2 D^\top D)^{-1} b` on the
    full grid ``shape``: the exact solver without ``K``, :class:`FourierSolver` where it applies,
    else :class:`ConjugateGradientSolver` preconditioned by :func:`circulant_preconditioner`;
    ``method="cg"``: plain conjugate gradients for every ``K`` (a check of the others)."""
    if K is None:
        exact = linear_solver(D, shape, dtype, device)
        return lambda b, mu1, mu2, z0=None: exact(b, mu1, mu2)
    if method == "cg":
        return ConjugateGradientSolver(D, K, cg_tol, cg_max_iterations)
    if fourier_applies(D, K):
        return FourierSolver(D, K, shape, dtype, device)
    preconditioner = circulant_preconditioner(D, K, shape, dtype, device)
    return ConjugateGradientSolver(D, K, cg_tol, cg_max_iterations, preconditioner)


def circulant_preconditioner(D: FiniteDifference, K: LinearOperator, shape, dtype, device):
    r"""The exact Fourier solve of the nearest problem with periodic spatial boundaries — the
    blur made circular, spatial differences made periodic — as a preconditioner of conjugate
    gradients, or ``None`` where there is none (``K`` not a blur, or a kernel larger than the
    image). The two operators differ only near the image border (a low-rank correction), so
    preconditioned CG needs few iterations: Strang's circulant preconditioner (G. Strang, "A
    proposal for Toeplitz matrix calculations", Stud. Appl. Math. 74, 1986; R. H. Chan & M. K.
    Ng, "Conjugate gradient methods for Toeplitz systems", SIAM Review 38(3), 1996)."""
    if not isinstance(K, Blur) or any(
        k > n for k, n in zip(K.kernel.shape, shape[-2:], strict=True)
    ):
        return None
    circular = K if K.padding == "circular" else Blur(K.kernel, "circular")
    if not fourier_applies(D, circular):
        D = FiniteDifference(D.dims, "periodic")
    return FourierSolver(D, circular, shape, dtype, device)
