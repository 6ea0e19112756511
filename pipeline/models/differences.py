r"""Finite differences :math:`D`, their adjoints :math:`D^\top` and the exact solve of
:math:`(\mu_1 I + \mu_2 D^\top D)\, z = b`, the linear step of every TV-type ADMM.

:math:`D` stacks forward differences of an image ``(B, C, H, W)`` along some axes:
``(-2, -1)`` (vertical, horizontal) for spatial TV, ``(-3,)`` (bands) for spectral TV. Along an axis
of length :math:`n`,

* ``periodic`` (the DLW reference): :math:`(Dx)_i = x_{(i+1) \bmod n} - x_i`;
  :math:`D^\top D` is circulant, diagonalised by the DFT with eigenvalues
  :math:`4 \sin^2(\pi k / n)`, :math:`k = 0, \dots, n-1` (Wang, Yang, Yin, Zhang 2008;
  ``psf2otf([1, -1])`` in the MATLAB codes);
* ``neumann``: :math:`(Dx)_i = x_{i+1} - x_i` for :math:`i < n-1` and :math:`(Dx)_{n-1} = 0`
  (no difference across the border: the first and last samples are never coupled);
  :math:`D^\top D` is the Neumann Laplacian, diagonalised by the DCT-II with eigenvalues
  :math:`4\sin^2(\pi k / 2n)`. We solve it exactly by the DFT of the half-sample symmetric
  extension to length :math:`2n`: on that extension the periodic difference is zero at
  :math:`i = n-1` and :math:`i = 2n-1`, so the periodic :math:`D^\top D` of the extension is the
  extension of the Neumann :math:`D^\top D`; the periodic solution of the symmetric right-hand
  side is therefore symmetric and its first half is the Neumann solution (Strang 1999, "The
  discrete cosine transform", SIAM Review 41).

The solves are exact up to rounding (no inner iterations), differentiable, and work on any
leading dimensions; the output has the dtype of the input.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "BOUNDARIES",
    "Boundary",
    "FiniteDifference",
    "spatial_difference",
    "spectral_difference",
]

Boundary = Literal["periodic", "neumann"]
BOUNDARIES: tuple[str, ...] = ("periodic", "neumann")


class FiniteDifference:
    r"""Forward differences along ``dims`` of a ``(B, C, H, W)`` tensor.

    ``D(x)`` has shape ``(B, K, C, H, W)``, one slice per axis in ``dims`` (``K = len(dims)``);
    ``adjoint(u)`` maps it back, :math:`\langle Dx, u\rangle = \langle x, D^\top u\rangle`;
    ``solve(b, mu1, mu2)`` returns :math:`(\mu_1 I + \mu_2 D^\top D)^{-1} b`.
    """

    def __init__(self, dims: tuple[int, ...], boundary: Boundary = "periodic") -> None:
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary = {boundary!r}: must be one of {list(BOUNDARIES)}")
        if not dims or any(d >= 0 for d in dims) or len(set(dims)) != len(dims):
            raise ValueError(f"dims = {dims!r}: need distinct negative axes, e.g. (-2, -1)")
        self.dims = tuple(sorted(dims))
        self.boundary = boundary

    def __repr__(self) -> str:
        return f"FiniteDifference(dims={self.dims}, boundary={self.boundary!r})"

    # -- D and Dᵀ -------------------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        return torch.stack([self._diff(x, d) for d in self.dims], dim=1)

    def adjoint(self, u: Tensor) -> Tensor:
        out = self._diff_adjoint(u[:, 0], self.dims[0])
        for k in range(1, len(self.dims)):
            out = out + self._diff_adjoint(u[:, k], self.dims[k])
        return out

    # -- the same, written into given tensors --------------------------------------------------
    # Bit-identical to __call__ and adjoint (each entry is the same subtraction of the same two
    # samples; the slices replace torch.roll's copies): the hand-written adjoint of the
    # unrolled solve (pipeline.models.tv_adjoint) runs them on buffers it reuses, since a fresh
    # cube-sized tensor per operation costs more in page faults than the arithmetic.
    def into(self, x: Tensor, out: Tensor) -> Tensor:
        """``out[:] = D(x)``; ``out`` of shape ``(B, K, C, H, W)``, not overlapping ``x``."""
        for k, d in enumerate(self.dims):
            o, n = out[:, k], x.shape[d]
            torch.sub(x.narrow(d, 1, n - 1), x.narrow(d, 0, n - 1), out=o.narrow(d, 0, n - 1))
            if self.boundary == "periodic":
                torch.sub(x.narrow(d, 0, 1), x.narrow(d, n - 1, 1), out=o.narrow(d, n - 1, 1))
            else:
                o.narrow(d, n - 1, 1).zero_()
        return out

    def adjoint_into(self, u: Tensor, out: Tensor, scratch: Tensor) -> Tensor:
        """``out[:] = Dᵀu``; ``scratch``: a tensor shaped as ``out`` (used when ``K > 1``)."""
        for k, d in enumerate(self.dims):
            o = out if k == 0 else scratch
            v = u[:, k]
            n = v.shape[d]
            if n == 1:  # one sample: D is 0 (periodic: v − v; Neumann: no difference)
                o.zero_()
                if k > 0:
                    out.add_(scratch)
                continue
            # (Dᵀv)_i = v_{i−1} − v_i, with v_{−1} = v_{n−1} (periodic) or 0 (Neumann, where
            # also v_{n−1} is ignored: (Dᵀv)_{n−1} = v_{n−2}).
            torch.sub(v.narrow(d, 0, n - 1), v.narrow(d, 1, n - 1), out=o.narrow(d, 1, n - 1))
            if self.boundary == "periodic":
                torch.sub(v.narrow(d, n - 1, 1), v.narrow(d, 0, 1), out=o.narrow(d, 0, 1))
            else:
                torch.neg(v.narrow(d, 0, 1), out=o.narrow(d, 0, 1))
                o.narrow(d, n - 1, 1).copy_(v.narrow(d, n - 2, 1))
            if k > 0:
                out.add_(scratch)
        return out

    def gram(self, x: Tensor) -> Tensor:
        """:math:`D^\\top D x` (the negative discrete Laplacian)."""
        return self.adjoint(self(x))

    def _diff(self, x: Tensor, dim: int) -> Tensor:
        if self.boundary == "periodic":
            return torch.roll(x, -1, dim) - x
        n = x.shape[dim]
        inner = x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)
        return torch.cat([inner, torch.zeros_like(x.narrow(dim, 0, 1))], dim)

    def _diff_adjoint(self, u: Tensor, dim: int) -> Tensor:
        if self.boundary == "periodic":
            return torch.roll(u, 1, dim) - u
        # The last difference is identically zero, so its adjoint ignores u_{n-1}:
        # (Dᵀu)_i = u_{i-1} [i ≥ 1] − u_i [i ≤ n−2].
        n = u.shape[dim]
        v = u.narrow(dim, 0, n - 1)
        zero = torch.zeros_like(u.narrow(dim, 0, 1))
        return torch.cat([zero, v], dim) - torch.cat([v, zero], dim)

    # -- (μ₁ I + μ₂ DᵀD)⁻¹ ------------------------------------------------------------------------
    def symbol(self, shape: torch.Size | tuple[int, ...], dtype, device) -> Tensor:
        r"""Eigenvalues of :math:`D^\top D` on the ``rfftn`` grid of ``dims`` (of the symmetric
        extension for ``neumann``), shaped to broadcast against the transform of ``shape``."""
        ndim = len(shape)
        total = None
        for i, d in enumerate(self.dims):
            n = shape[d] * (2 if self.boundary == "neumann" else 1)
            m = n // 2 + 1 if i == len(self.dims) - 1 else n  # rfftn halves the last axis
            k = torch.arange(m, dtype=torch.float64, device=device)
            lam = 4.0 * torch.sin(math.pi * k / n) ** 2
            view = [1] * ndim
            view[ndim + d] = m
            lam = lam.view(view)
            total = lam if total is None else total + lam
        return total.to(dtype)

    def solve(self, b: Tensor, mu1: float, mu2: float, symbol: Tensor | None = None) -> Tensor:
        r""":math:`z = (\mu_1 I + \mu_2 D^\top D)^{-1} b`, exactly, by one forward and one
        inverse real FFT over ``dims``. ``symbol`` may be passed to reuse :meth:`symbol`."""
        if not mu1 > 0 or not mu2 >= 0:
            raise ValueError(f"need mu1 > 0 and mu2 ≥ 0, got {mu1}, {mu2}")
        if symbol is None:
            symbol = self.symbol(b.shape, b.dtype, b.device)
        ext = b
        if self.boundary == "neumann":
            for d in self.dims:
                ext = torch.cat([ext, ext.flip(d)], d)
        sizes = [ext.shape[d] for d in self.dims]
        spec = torch.fft.rfftn(ext, dim=self.dims)
        z = torch.fft.irfftn(spec / (mu1 + mu2 * symbol), s=sizes, dim=self.dims)
        if self.boundary == "neumann":
            for d in self.dims:
                z = z.narrow(d, 0, b.shape[d])
        return z


def spatial_difference(boundary: Boundary = "periodic") -> FiniteDifference:
    """:math:`D = (D_v, D_h)`: vertical and horizontal differences of every band."""
    return FiniteDifference((-2, -1), boundary)


def spectral_difference(boundary: Boundary = "periodic") -> FiniteDifference:
    """:math:`D_b`: differences between neighbouring bands at every pixel."""
    return FiniteDifference((-3,), boundary)
