r"""The exact solve of :math:`(\mu_1 I + \mu_2 D^\top D)\, z = b` for Neumann differences, by
dense cosine transforms.

For forward differences with Neumann boundaries along an axis of length :math:`n`
(:mod:`pipeline.models.differences`), :math:`D^\top D = Q^\top \operatorname{diag}(\lambda) Q`
with :math:`Q` the orthonormal DCT-II matrix,
:math:`Q_{ki} = s_k \cos\big(\pi k (2i + 1) / (2n)\big)`, :math:`s_0 = \sqrt{1/n}`,
:math:`s_k = \sqrt{2/n}`, and :math:`\lambda_k = 4 \sin^2(\pi k / (2n))` (Strang, "The discrete
cosine transform", SIAM Review 41, 1999). Over several axes the operator is a Kronecker sum, so

.. math:: z = \Big(\bigotimes_d Q_d\Big)^{\!\top}
          \frac{\big(\bigotimes_d Q_d\big)\, b}{\mu_1 + \mu_2 \sum_d \lambda_{d}}.

:meth:`FiniteDifference.solve` computes the same by an FFT of the symmetric extension, whose
size is :math:`2^{K}` times the image's over :math:`K` axes; the dense transforms here cost
:math:`O(N \sum_d n_d)` multiply-adds in BLAS matrix products and are several times faster for
the cube sizes of this benchmark (31 bands, 32–256 pixels a side), which is what the target
models (thousands of iterations) need. Matrices are built in float64 and cached per length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

from pipeline.models.differences import FiniteDifference

__all__ = ["NeumannSolver", "Solve", "dct_matrix", "linear_solver"]


@lru_cache(maxsize=32)
def _dct(n: int) -> tuple[Tensor, Tensor]:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    q = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    q[0] = math.sqrt(1.0 / n)
    lam = 4.0 * torch.sin(math.pi * torch.arange(n, dtype=torch.float64) / (2 * n)) ** 2
    return q, lam


def dct_matrix(n: int) -> tuple[Tensor, Tensor]:
    """``(Q, λ)``: the orthonormal DCT-II matrix of size ``n`` and the eigenvalues of the 1-D
    Neumann :math:`D^\\top D` it diagonalises (float64, cached)."""
    q, lam = _dct(n)
    return q.clone(), lam.clone()


class NeumannSolver:
    r""":math:`b \mapsto (\mu_1 I + \mu_2 D^\top D)^{-1} b` for Neumann differences along
    ``dims`` of tensors shaped ``shape`` (any leading dimensions), in ``dtype``."""

    def __init__(self, dims: tuple[int, ...], shape: torch.Size | tuple[int, ...], dtype, device):
        self.dims = tuple(sorted(dims))
        ndim = len(shape)
        self.mats = []
        total = None
        for d in self.dims:
            q, lam = _dct(shape[d])
            self.mats.append(q.to(dtype=dtype, device=device))
            view = [1] * ndim
            view[ndim + d] = shape[d]
            lam = lam.to(dtype=dtype, device=device).view(view)
            total = lam if total is None else total + lam
        self.symbol = total

    def _transform(self, x: Tensor, inverse: bool) -> Tensor:
        for d, q in zip(self.dims, self.mats, strict=True):
            m = q if inverse else q.mT  # rows of x · Qᵀ = Q applied along the axis
            x = (x.movedim(d, -1) @ m).movedim(-1, d)
        return x

    def __call__(self, b: Tensor, mu1: float, mu2: float) -> Tensor:
        if not mu1 > 0 or not mu2 >= 0:
            raise ValueError(f"need mu1 > 0 and mu2 ≥ 0, got {mu1}, {mu2}")
        return self._transform(self._transform(b, False) / (mu1 + mu2 * self.symbol), True)


Solve = Callable[[Tensor, float, float], Tensor]


def linear_solver(D: FiniteDifference, shape, dtype, device) -> Solve:
    r"""``solve(b, mu1, mu2)`` :math:`= (\mu_1 I + \mu_2 D^\top D)^{-1} b` for ``D``: dense
    cosine transforms for Neumann boundaries, :meth:`FiniteDifference.solve` (FFT) otherwise."""
    if D.boundary == "neumann":
        return NeumannSolver(D.dims, shape, dtype, device)
    symbol = D.symbol(shape, dtype, device)
    return lambda b, mu1, mu2: D.solve(b, mu1, mu2, symbol)
