r"""Linear forward operators :math:`y = A x` for variational image restoration.

Every operator is a :class:`torch.nn.Module` with ``A(x)`` (``forward`` is ``A``) and its exact
adjoint ``A_adjoint(y)`` with respect to the Euclidean inner product, i.e.
:math:`\langle A x, y\rangle = \langle x, A^\top y\rangle`. Images are tensors of shape
``(B, C, H, W)`` (any leading dimensions work), any real float dtype; every band is processed
independently and parameters are cast to the input's dtype and device.

Operators
---------
``Identity``
    :math:`A x = x`.
``Blur(k, padding)``
    True convolution of each band with an odd-sized kernel :math:`k` centred at
    :math:`c = (\lfloor h/2\rfloor, \lfloor w/2\rfloor)`:

    .. math:: (A x)[n] = \sum_m k[m]\, x[n - m + c],

    which is what ``scipy.ndimage.convolve`` computes (not the cross-correlation of
    ``torch.nn.functional.conv2d``, which therefore receives the flipped kernel).

    * ``padding="circular"``: periodic boundary, :math:`x[n]` indices taken modulo
      ``(H, W)``. :math:`A` is block-circulant and diagonalised by the DFT,
      :math:`A = F^{-1} \operatorname{diag}(\hat k) F`, where :math:`\hat k` (the optical
      transfer function) is the DFT of the kernel zero-padded to ``(H, W)`` and rolled so its
      centre sits at index ``(0, 0)``; :math:`A^\top = F^{-1}\operatorname{diag}(\bar{\hat k}) F`.
    * ``padding="zero"``: :math:`x[n] = 0` outside the image, output of size ``(H, W)``
      ("same" convolution); :math:`A^\top` is the transposed convolution, i.e. the
      cross-correlation with :math:`k` under the same zero boundary.
``Inpainting(M)``
    :math:`A x = M \odot x` with a binary mask :math:`M`; self-adjoint (and a projection).
``Downsampling(f, filter, padding)``
    :math:`A = S_f K` with an anti-aliasing ``Blur`` :math:`K` (Gaussian of
    :math:`\sigma = f/2`, box of width :math:`f`, or none) followed by the decimation
    :math:`(S_f u)[i, j] = u[f i, f j]`; :math:`A^\top = K^\top S_f^\top` where
    :math:`S_f^\top` up-samples by zero filling.

Kernel factories ``gaussian_kernel`` and ``motion_kernel`` and the mask factory
``random_mask`` return float64 tensors; all randomness comes from a ``numpy.random.Generator``.

Sources
-------
* DeepInverse, ``deepinv/physics/forward.py`` (``LinearPhysics``: ``A`` / ``A_adjoint``),
  ``deepinv/physics/blur.py`` (``Blur``, ``BlurFFT``, ``Downsampling``) and
  ``deepinv/physics/inpainting.py``; Tachella et al., "DeepInverse: A Python package for
  solving imaging inverse problems with deep learning", 2023.
* P. C. Hansen, J. G. Nagy, D. P. O'Leary, *Deblurring Images: Matrices, Spectra, and
  Filtering*, SIAM 2006 (boundary conditions; periodic blur diagonalised by the FFT).
* G. Boracchi, A. Foi, "Modeling the performance of image restoration from motion blur",
  IEEE Trans. Image Process. 21(8):3502-3517, 2012 (random camera-shake trajectories).
* A. Levin, Y. Weiss, F. Durand, W. T. Freeman, "Understanding and evaluating blind
  deconvolution algorithms", CVPR 2009 (camera-shake kernels as rasterised trajectories).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "OPERATORS",
    "Blur",
    "Downsampling",
    "Identity",
    "Inpainting",
    "LinearOperator",
    "box_kernel",
    "gaussian_kernel",
    "motion_kernel",
    "operator_kind",
    "random_mask",
]

_PADDINGS = ("circular", "zero")


class LinearOperator(nn.Module):
    r"""Base class of a linear operator :math:`A` with adjoint :math:`A^\top`."""

    def A(self, x: Tensor) -> Tensor:
        r"""Apply :math:`A x`."""
        raise NotImplementedError

    def A_adjoint(self, y: Tensor) -> Tensor:
        r"""Apply :math:`A^\top y`."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)


class Identity(LinearOperator):
    r""":math:`A x = x = A^\top x`."""

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y


class Blur(LinearOperator):
    r"""Per-band convolution :math:`(A x)[n] = \sum_m k[m]\, x[n - m + c]` (see module docs).

    Args:
        kernel: 2-D tensor ``(h, w)`` with odd ``h`` and ``w``, centred at ``(h // 2, w // 2)``.
        padding: ``"circular"`` (periodic boundary, via FFT) or ``"zero"`` (zero boundary).
    """

    def __init__(self, kernel: Tensor, padding: str = "circular") -> None:
        super().__init__()
        kernel = torch.as_tensor(kernel)
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be 2-D with odd sizes, got shape {tuple(kernel.shape)}")
        if padding not in _PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; expected one of {_PADDINGS}")
        if not kernel.is_floating_point():
            kernel = kernel.double()
        self.padding = padding
        self.register_buffer("kernel", kernel)

    def _otf(self, x: Tensor) -> Tensor:
        r"""Transfer function :math:`\hat k = \mathrm{rfft2}(\text{centred, padded } k)`."""
        (h, w), (H, W) = self.kernel.shape, x.shape[-2:]
        if h > H or w > W:
            raise ValueError(
                f"kernel of shape {(h, w)} larger than image {(H, W)} with circular padding"
            )
        psf = x.new_zeros(H, W)
        psf[:h, :w] = self.kernel.to(x)
        psf = torch.roll(psf, shifts=(-(h // 2), -(w // 2)), dims=(0, 1))
        return torch.fft.rfft2(psf)

    def _circular(self, x: Tensor, adjoint: bool) -> Tensor:
        otf = self._otf(x)
        if adjoint:
            otf = otf.conj()
        return torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=x.shape[-2:])

    def _weight(self, x: Tensor) -> Tensor:
        # conv2d is a cross-correlation: flipping the kernel turns it into a true convolution.
        return self.kernel.to(x).flip(-2, -1)[None, None]

    def A(self, x: Tensor) -> Tensor:
        if self.padding == "circular":
            return self._circular(x, adjoint=False)
        h, w = self.kernel.shape
        flat = x.reshape(-1, 1, *x.shape[-2:])
        return F.conv2d(flat, self._weight(x), padding=(h // 2, w // 2)).reshape(x.shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        if self.padding == "circular":
            return self._circular(y, adjoint=True)
        h, w = self.kernel.shape
        flat = y.reshape(-1, 1, *y.shape[-2:])
        out = F.conv_transpose2d(flat, self._weight(y), padding=(h // 2, w // 2))
        return out.reshape(y.shape)


class Inpainting(LinearOperator):
    r""":math:`A x = M \odot x = A^\top x` with a {0, 1} mask broadcastable to ``(B, C, H, W)``.

    Missing pixels are kept (as zeros) so that :math:`A x` has the shape of :math:`x`.
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask)
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must contain only 0 and 1")
        self.register_buffer("mask", mask)

    def A(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self.A(y)


class Downsampling(LinearOperator):
    r""":math:`A = S_f K`, :math:`(S_f u)[i, j] = u[f i, f j]`; :math:`A^\top = K^\top S_f^\top`.

    Args:
        factor: integer decimation factor :math:`f`; ``H`` and ``W`` must be divisible by it.
        filter: anti-aliasing kernel :math:`K`: ``"gaussian"`` (:math:`\sigma = f/2`),
            ``"box"`` (width-:math:`f` box centred on the kept pixel, see :func:`box_kernel`)
            or ``None`` (plain decimation).
        padding: boundary of :math:`K`, ``"circular"`` or ``"zero"``.
    """

    def __init__(
        self,
        factor: int,
        filter: Literal["gaussian", "box"] | None = "gaussian",
        padding: str = "circular",
    ) -> None:
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        if padding not in _PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; expected one of {_PADDINGS}")
        self.factor = int(factor)
        self.padding = padding
        if filter == "gaussian":
            self.filter: Blur | None = Blur(gaussian_kernel(self.factor / 2), padding)
        elif filter == "box":
            self.filter = Blur(box_kernel(self.factor), padding)
        elif filter is None:
            self.filter = None
        else:
            raise ValueError(f"unknown filter {filter!r}; expected 'gaussian', 'box' or None")

    def A(self, x: Tensor) -> Tensor:
        f = self.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"image shape {tuple(x.shape)} not divisible by downsampling factor {f}"
            )
        if self.filter is not None:
            x = self.filter.A(x)
        return x[..., ::f, ::f]

    def A_adjoint(self, y: Tensor) -> Tensor:
        f = self.factor
        up = y.new_zeros(*y.shape[:-2], y.shape[-2] * f, y.shape[-1] * f)
        up[..., ::f, ::f] = y
        return up if self.filter is None else self.filter.A_adjoint(up)


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    r"""Isotropic Gaussian :math:`k[m] \propto \exp(-\|m - c\|^2 / 2\sigma^2)`, sum 1.

    Args:
        sigma: standard deviation in pixels (> 0).
        size: odd side length; default :math:`2\lceil 3\sigma\rceil + 1`.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def box_kernel(width: int) -> Tensor:
    r"""Normalised box of width :math:`f` centred on a pixel, as an odd-sized kernel.

    For odd :math:`f` it is ``ones(f, f) / f**2``. For even :math:`f` the box
    :math:`[-f/2, f/2]^2` only half-covers the outermost pixels, giving the separable profile
    :math:`[\tfrac12, 1, \dots, 1, \tfrac12] / f` of odd length :math:`f + 1`, which keeps the
    kernel symmetric instead of shifting it by half a pixel.
    """
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    g = torch.ones(width + 1 - width % 2, dtype=torch.float64)
    if width % 2 == 0:
        g[[0, -1]] = 0.5
    g = g / width
    return torch.outer(g, g)


def motion_kernel(
    size: int,
    rng: np.random.Generator,
    length: float | None = None,
    anxiety: float | None = None,
    n_steps: int = 2000,
) -> Tensor:
    r"""Random camera-shake kernel, after Boracchi & Foi (2012).

    A trajectory :math:`z_t \in \mathbb{C}` of ``n_steps`` points and total length
    :math:`L` is a random walk with inertia: the velocity :math:`v_t` keeps constant speed
    :math:`\delta = L / (T - 1)` and is updated as

    .. math::
        v_{t+1} = \delta\,\frac{v_t + \Delta_t}{|v_t + \Delta_t|},\quad
        \Delta_t = b_t + a\,(g\,\varepsilon_t - \gamma z_t)\,\delta,\quad
        z_{t+1} = z_t + v_{t+1},

    with :math:`\varepsilon_t \sim \mathcal{CN}(0, 2)`, a centripetal pull :math:`\gamma z_t`
    that keeps the path compact, and rare abrupt shakes :math:`b_t = 2 v_t e^{i(\pi + u)}`,
    :math:`u \sim U(-1/2, 1/2)`, occurring with probability :math:`p\,a`. The parameters
    :math:`g \sim U(0, 10)`, :math:`\gamma \sim U(0, 0.7)` and :math:`p \sim U(0, 0.2)` are
    Boracchi & Foi's; the anxiety is drawn from :math:`U(0, 0.01)` rather than their
    :math:`U(0, 0.1)`, which with :math:`T = 2000` steps mostly gives tangled blobs instead of
    shake strokes. The trajectory is shrunk if needed to fit the grid, centred by its bounding
    box, and every point is splatted bilinearly (uniform exposure); the kernel is non-negative
    and sums to 1.

    Args:
        size: odd side length of the kernel.
        rng: source of all randomness; the same state gives the same kernel.
        length: trajectory length :math:`L` in pixels; default ``1.5 * size``, which (because
            of the curvature and the centripetal pull) spans about 70 % of the grid typically.
        anxiety: shake intensity :math:`a`; default drawn from :math:`U(0, 0.01)`.
        n_steps: number of trajectory points :math:`T`.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3, got {size}")
    length = 1.5 * size if length is None else float(length)
    anxiety = 0.01 * rng.random() if anxiety is None else float(anxiety)
    centripetal, gaussian_term = 0.7 * rng.random(), 10 * rng.random()
    freq_big_shakes = 0.2 * rng.random()
    step = length / (n_steps - 1)
    shake = rng.random(n_steps - 1) < freq_big_shakes * anxiety
    shake_angle = np.pi + rng.random(n_steps - 1) - 0.5
    noise = rng.standard_normal(n_steps - 1) + 1j * rng.standard_normal(n_steps - 1)

    z = np.zeros(n_steps, dtype=complex)
    v = step * np.exp(2j * np.pi * rng.random())
    for t in range(n_steps - 1):
        dv = anxiety * (gaussian_term * noise[t] - centripetal * z[t]) * step
        if shake[t]:
            dv += 2 * v * np.exp(1j * shake_angle[t])
        v = v + dv
        # Renormalising after the update gives inertia (direction drifts) at constant speed.
        v = step * v / abs(v)
        z[t + 1] = z[t] + v

    extent = max(np.ptp(z.real), np.ptp(z.imag), 1e-12)
    scale = min(1.0, (size - 1) / extent)
    centre = (z.real.max() + z.real.min()) / 2 + 1j * (z.imag.max() + z.imag.min()) / 2
    z = (z - centre) * scale + (size - 1) / 2 * (1 + 1j)
    k = _splat(z.imag, z.real, size)
    return torch.from_numpy(k / k.sum())


def _splat(rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Add a unit mass at each sub-pixel point ``(rows[i], cols[i])`` with bilinear weights.

    Bilinear weights keep each point's mass and centre of mass, so the kernel's moments follow
    the trajectory's rather than being snapped to the grid.
    """
    rows, cols = np.clip(rows, 0, size - 1), np.clip(cols, 0, size - 1)
    # Clamping the base index keeps (r0 + 1) on the grid for points on the last row/column.
    r0 = np.minimum(np.floor(rows).astype(int), size - 2)
    c0 = np.minimum(np.floor(cols).astype(int), size - 2)
    fr, fc = rows - r0, cols - c0
    k = np.zeros((size, size))
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            np.add.at(k, (r0 + dr, c0 + dc), wr * wc)
    return k


def random_mask(
    shape: tuple[int, ...], missing_fraction: float, rng: np.random.Generator
) -> Tensor:
    """Binary mask of ``shape`` with exactly ``round(missing_fraction * numel)`` zeros.

    The missing entries are a uniformly random subset drawn with ``rng``; 1 means observed.
    """
    if not 0 <= missing_fraction <= 1:
        raise ValueError(f"missing_fraction must be in [0, 1], got {missing_fraction}")
    n = math.prod(shape)
    mask = np.ones(n)
    mask[rng.permutation(n)[: round(missing_fraction * n)]] = 0
    return torch.from_numpy(mask.reshape(shape))


OPERATORS: dict[str, type[LinearOperator]] = {
    "identity": Identity,
    "blur": Blur,
    "inpainting": Inpainting,
    "downsampling": Downsampling,
}


# The task kind of each operator class: the names params, restorers and models use.
KINDS: dict[type[LinearOperator], str] = {
    Identity: "identity",
    Blur: "blur",
    Downsampling: "downsample",
    Inpainting: "inpaint",
}


def operator_kind(A: LinearOperator | None) -> str:
    """``identity``, ``blur``, ``downsample`` or ``inpaint``: the kind of task ``A`` makes
    (``None`` is the identity)."""
    if A is None:
        return "identity"
    for cls, kind in KINDS.items():
        if type(A) is cls:
            return kind
    raise ValueError(f"unknown operator type {type(A).__name__}")
