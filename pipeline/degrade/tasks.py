r"""Restoration tasks: the forward operator :math:`A` of a degraded case, :math:`y = A x + n`.

A case of ``degrade.cases`` may carry ``operator: {name: ..., ...}``; without one it is a
denoising case (:math:`A = I`) and its files are exactly those of a plain noise case. The noise
model is then applied to :math:`A x` on y's grid. Operators (:mod:`pipeline.degrade.operators`
holds them with their exact adjoints):

``blur``
    per-band convolution with a Gaussian kernel of width ``sigma`` pixels (``kernel:
    gaussian``), or with a random camera-shake kernel of side ``size`` drawn per image
    (``kernel: motion``; Boracchi & Foi 2012); ``padding`` circular (default) or zero. Label
    ``blur-g1.6``, ``blur-m9`` (``-zero`` appended for the zero boundary).
``downsample``
    :math:`A = S_f K`: an anti-aliasing filter (Gaussian of σ = f/2 by default, box, or none)
    then keeping every f-th pixel, ``factor`` 2 or 4 (super-resolution). y has the
    low-resolution grid :math:`(H/f, W/f)`. Label ``sr-x2``.
``inpaint``
    :math:`A x = M \odot x` with a random mask missing the fraction ``missing`` of the pixels
    (of every band independently, or with ``spectra: true`` whole spectra: all bands of a pixel
    together), drawn per image. y keeps the full size, 0 at missing pixels. Label
    ``inpaint-50`` (``-spectra``).

The case label joins operator and noise, ``blur-g1.6/noniid``: its files are
``data/degraded/<split>/blur-g1.6/noniid/<image>.npz``. Besides ``noisy``, ``sigma`` and ``mask``
(on y's grid), such a file stores what rebuilds :math:`A`: ``operator`` (a JSON string of the
operator's parameters), ``kernel`` (float64, the blur or anti-aliasing kernel) and ``observed``
(bool, the inpainting mask); :func:`load_degraded` returns the arrays and the operator.

Sources: Hansen, Nagy, O'Leary, *Deblurring Images*, SIAM 2006 (boundary conditions); the
sibling benchmarks' task suites (Willingham et al., regularising gradients across denoising,
super-resolution, inpainting and deblurring; Gao et al., proxy-guided deconvolution; Prost et
al., adversarial local regulariser for denoising and deblurring).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.io import load_npz
from pipeline.schema import ConfigError, named_mapping, parse_dataclass, require, to_plain

__all__ = [
    "DENOISE",
    "OPERATOR_KEYS",
    "Operator",
    "build_operator",
    "load_degraded",
]

DENOISE = "denoise"  # the task of a case without an operator (A = I)
OPERATOR_KEYS = ("operator", "kernel", "observed")  # arrays a file may add for its operator


@dataclass(frozen=True)
class BlurParams:
    kernel: Literal["gaussian", "motion"] = "gaussian"
    sigma: float = 1.6  # Gaussian width in pixels (kernel side 2⌈3σ⌉ + 1)
    size: int = 9  # motion kernel side (odd), a new kernel per image
    padding: Literal["circular", "zero"] = "circular"

    def check(self, where: str) -> None:
        require(0 < self.sigma <= 8, f"{where}.sigma", self.sigma, "must be in (0, 8] pixels")
        ok = self.size >= 3 and self.size % 2 == 1 and self.size <= 31
        require(ok, f"{where}.size", self.size, "must be an odd integer in [3, 31]")

    def label(self) -> str:
        base = f"blur-g{self.sigma:g}" if self.kernel == "gaussian" else f"blur-m{self.size}"
        return base + ("-zero" if self.padding == "zero" else "")


@dataclass(frozen=True)
class DownsampleParams:
    factor: Literal[2, 4] = 2
    filter: Literal["gaussian", "box", "none"] = "gaussian"
    padding: Literal["circular", "zero"] = "circular"

    def check(self, where: str) -> None:
        pass

    def label(self) -> str:
        tail = "" if self.filter == "gaussian" else f"-{self.filter}"
        return f"sr-x{self.factor}{tail}" + ("-zero" if self.padding == "zero" else "")


@dataclass(frozen=True)
class InpaintParams:
    missing: float = 0.5  # fraction of the pixels (of all bands, or of the spectra) missing
    spectra: bool = False  # whole spectra missing (all bands of a pixel together)

    def check(self, where: str) -> None:
        ok = 0 < self.missing < 1
        require(ok, f"{where}.missing", self.missing, "must be a fraction in (0, 1)")

    def label(self) -> str:
        return f"inpaint-{round(100 * self.missing):d}" + ("-spectra" if self.spectra else "")


_PARAMS: dict[str, type] = {
    "blur": BlurParams,
    "downsample": DownsampleParams,
    "inpaint": InpaintParams,
}


@dataclass(frozen=True)
class Operator:
    """A case's operator: its name and parameters; :meth:`draw` makes one image's :math:`A`."""

    name: str
    params: Any

    @classmethod
    def from_param(cls, value: Any, where: str = "operator") -> Operator:
        if isinstance(value, Operator):
            return value
        name, rest = named_mapping(value, where, "an operator", _PARAMS, "unknown operator")
        return cls(name, parse_dataclass(_PARAMS[name], rest, where))

    @property
    def label(self) -> str:
        return self.params.label()

    def to_param(self) -> dict[str, Any]:
        return {"name": self.name, **to_plain(self.params)}

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The arrays that rebuild this image's :math:`A` (a JSON ``operator`` string plus its
        ``kernel`` or ``observed`` mask); ``shape`` is the clean image's (C, H, W)."""
        from pipeline.degrade.operators import box_kernel, motion_kernel

        p = self.params
        out = {"operator": np.array([json.dumps(self.to_param(), sort_keys=True)])}
        if self.name == "blur":
            if p.kernel == "gaussian":
                out["kernel"] = exact_gaussian_kernel(p.sigma)
            else:
                out["kernel"] = portable_kernel(motion_kernel(p.size, rng).numpy())
        elif self.name == "downsample":
            f = int(p.factor)
            c, h, w = shape
            require(h % f == 0 and w % f == 0, "operator.factor", f, f"must divide {h}×{w}")
            if p.filter == "gaussian":
                out["kernel"] = exact_gaussian_kernel(f / 2)
            elif p.filter == "box":
                out["kernel"] = box_kernel(f).numpy()
        else:
            c, h, w = shape
            n = h * w if p.spectra else c * h * w
            missing = np.zeros(n, dtype=bool)
            missing[rng.permutation(n)[: round(p.missing * n)]] = True
            observed = ~missing.reshape((1, h, w) if p.spectra else (c, h, w))
            out["observed"] = np.ascontiguousarray(np.broadcast_to(observed, (c, h, w)))
        return out


def _spec(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The operator's parameters: the JSON string stored as a one-element array."""
    return json.loads(str(np.asarray(arrays["operator"]).reshape(-1)[0]))


def build_operator(arrays: dict[str, np.ndarray], where: str = "operator"):
    """The :class:`~pipeline.degrade.operators.LinearOperator` stored in a degraded file's
    arrays (``operator`` JSON, ``kernel``, ``observed``)."""
    import torch

    from pipeline.degrade import operators as ops

    try:
        op = Operator.from_param(_spec(arrays), where)
    except (KeyError, ValueError, ConfigError) as exc:
        raise ValueError(f"{where}: not a valid operator record ({exc})") from None
    p = op.params
    if op.name == "inpaint":
        observed = arrays.get("observed")
        if observed is None or observed.dtype != bool:
            raise ValueError(f"{where}: an inpainting operator needs a bool 'observed' mask")
        return ops.Inpainting(torch.from_numpy(observed.astype(np.float64)))
    kernel = arrays.get("kernel")
    if op.name == "blur":
        if kernel is None:
            raise ValueError(f"{where}: a blur operator needs its 'kernel'")
        return ops.Blur(torch.from_numpy(np.asarray(kernel, dtype=np.float64)), p.padding)
    down = ops.Downsampling(p.factor, None, p.padding)
    if p.filter != "none":
        if kernel is None:
            raise ValueError(f"{where}: a filtered downsampling needs its 'kernel'")
        down.filter = ops.Blur(torch.from_numpy(np.asarray(kernel, dtype=np.float64)), p.padding)
    return down


def exact_gaussian_kernel(sigma: float) -> np.ndarray:
    """The 2-D Gaussian of :func:`pipeline.degrade.operators.gaussian_kernel` (side
    2⌈3σ⌉ + 1), as the outer product of correctly rounded 1-D weights
    (:func:`pipeline.data.dataset.gaussian_kernel`): the same bits on every machine."""
    from pipeline.data.dataset import gaussian_kernel

    g = gaussian_kernel(float(sigma), math.ceil(3 * sigma))
    return np.outer(g, g)


def portable_kernel(k: np.ndarray) -> np.ndarray:
    """A kernel rounded to multiples of 2⁻⁴⁰ and normalised by an exactly rounded sum: a random
    kernel drawn through ``exp``/``sin`` (whose last bit depends on the CPU's SIMD path) comes
    out with the same bits on every machine, unless a weight lies within ~1e-16 of a rounding
    boundary of the 2⁻⁴⁰ grid."""
    k = np.round(np.asarray(k, dtype=np.float64) * 2.0**40) / 2.0**40
    return k / math.fsum(k.ravel().tolist())


def apply_operator(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    r""":math:`A x` of a (C, H, W) array in float64, from a file's operator arrays, computed
    with NumPy in a fixed order (a sum of shifted, scaled copies for a convolution, no FFT):
    every operation is one correctly rounded product or sum, so the degraded files have the
    same bits on every machine. Equal to the operator of :func:`build_operator` to rounding
    (tested)."""
    op = Operator.from_param(_spec(arrays))
    x = np.asarray(x, dtype=np.float64)
    if op.name == "inpaint":
        return np.where(arrays["observed"], x, 0.0)
    padding = op.params.padding
    if "kernel" in arrays:
        x = _convolve(x, np.asarray(arrays["kernel"], dtype=np.float64), padding)
    if op.name == "downsample":
        f = int(op.params.factor)
        x = np.ascontiguousarray(x[..., ::f, ::f])
    return x


def _convolve(x: np.ndarray, k: np.ndarray, padding: str) -> np.ndarray:
    r""":math:`(k * x)[n] = \sum_m k[m]\, x[n - m + c]` per band, circular or zero boundary
    (the convention of :class:`pipeline.degrade.operators.Blur`)."""
    h, w = k.shape
    ch, cw = h // 2, w // 2
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            if k[i, j] == 0.0:
                continue
            di, dj = i - ch, j - cw  # out[n] += k[m] x[n - (m - c)]
            if padding == "circular":
                shifted = np.roll(x, (di, dj), axis=(-2, -1))
            else:
                shifted = np.zeros_like(x)
                H, W = x.shape[-2:]
                src = x[..., max(0, -di) : H - max(0, di), max(0, -dj) : W - max(0, dj)]
                shifted[..., max(0, di) : H - max(0, -di), max(0, dj) : W - max(0, -dj)] = src
            out += k[i, j] * shifted
    return out


def load_degraded(path: str | Path) -> tuple[dict[str, np.ndarray], Any]:
    """``(arrays, A)``: ``noisy``, ``sigma``, ``mask`` and any operator arrays of a degraded
    file, and its operator (``None`` for denoising)."""
    arrays = load_npz(path, ("noisy", "sigma", "mask"), optional=OPERATOR_KEYS)
    if "operator" not in arrays:
        return arrays, None
    return arrays, build_operator(arrays, str(path))


def operator_hash_arrays(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays a degraded file's sha256 covers after ``noisy, sigma, mask``: its operator
    arrays in :data:`OPERATOR_KEYS` order (none for denoising, so those hashes are unchanged)."""
    return [arrays[k] for k in OPERATOR_KEYS if k in arrays]
