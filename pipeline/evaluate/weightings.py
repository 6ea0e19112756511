r"""Weight maps for the weighted fidelity :math:`\tfrac12 \sum_i w_i (y_i - x_i)^2`
(``docs/science.md`` §1, §6).

:func:`compute_weights` gives one (C, H, W) float32 map per noisy image, finite, ≥ 0 and of mean 1
(the scale of the unweighted model), for each built-in kind of :data:`BUILTIN`:

``unweighted``
    :math:`w = 1`.
``oracle``
    :math:`w \propto 1/\sigma^2` from the true σ map, 0 on the corrupted pixels (true mask),
    normalised to mean 1: the maximum-likelihood weights of Gaussian noise once the gross errors
    are known. A relative reference, not an upper bound. If every pixel is corrupted no pixel
    carries information about the clean image and the map falls back to uniform (w = 1), the
    unweighted model, rather than dividing 0 by 0.
``handcrafted``
    The classical recipe written without learning, from the noisy image only
    (:func:`handcrafted_weights`; its parameters are the module constants below).

Learned methods add their own weightings (``Method.weights``, e.g. DLW's ``dlw:<source set>``);
:func:`plan_weightings` lists built-in and learned ones alike as :class:`Weighting` entries, and
:func:`check_map` holds every map to the same contract.

The handcrafted recipe, per band b:

1. **Dead and saturated readings.** Pixels exactly at an end of the data range
   (:data:`RANGE_ENDS`, 0 and 1) are flagged: continuous Gaussian noise never lands there
   exactly, dead detector lines read 0 and salt-and-pepper impulses read 0 or 1. This is the
   detection step of switching (decision-based) median filters, e.g. Srinivasan & Ebenezer,
   IEEE SPL 14(3), 2007.
2. **Noise level.** :math:`\hat\sigma_b = \mathrm{median}|d - \mathrm{median}\,d| / 0.6745`
   (the MAD) with :math:`d` the finest-scale diagonal Haar details
   :math:`(y_{i,j} - y_{i,j+1} - y_{i+1,j} + y_{i+1,j+1})/2` of every 2×2 block whose four
   pixels passed step 1 (Donoho & Johnstone, Biometrika 81(3), 1994:
   :math:`\mathrm{Var}\,d = \sigma^2` for white noise). The detail cancels image ramps and any
   constant column or row offset, so stripes do not inflate it.
3. **Outliers.** Residual :math:`r = y - \mathrm{med}_{3\times3}(y)` (median over the window's
   pixels that passed step 1); pixels with :math:`|r| > k\,\hat\sigma_b`, :math:`k` =
   :data:`PIXEL_K`, are flagged.
4. **Stripes and dead lines.** Column means :math:`m_j` of the band (pixels that passed step 1),
   minus the median of the means of its :data:`COLUMN_WINDOW` − 1 neighbouring columns (itself
   left out); a column whose offset exceeds :math:`k_c\,\hat\sigma_b/\sqrt{n_j}`
   (:math:`k_c` = :data:`COLUMN_K`, :math:`n_j` its pixel count) is a stripe or dead line, and
   the whole column is flagged in that band. On a 32-row tile a shift below 3.5/√32 ≈ 0.6 σ̂_b
   is not flagged, so weak stripes in noisy bands stay unflagged.
5. **Weights.** :math:`w = 1/\max(\hat\sigma_b, \sigma_{\min})^2`, times :data:`FLAG_FACTOR` on
   flagged pixels, normalised to mean 1.

Limits: a vertical object one or two columns wide, seen in every band, can pass for a stripe;
random-valued impulses close to the clean value are missed; a band with no usable 2×2 block takes
the median σ̂ of the other bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BUILTIN",
    "COLUMN_K",
    "COLUMN_WINDOW",
    "FLAG_FACTOR",
    "MAD_TO_SIGMA",
    "PIXEL_K",
    "RANGE_ENDS",
    "SIGMA_FLOOR",
    "Weighting",
    "check_map",
    "compute_weights",
    "detect_corrupted",
    "estimate_band_sigma",
    "handcrafted_weights",
    "oracle_weights",
    "plan_weightings",
    "range_end_mask",
]

# The built-in weightings and whether each knows the truth (σ map and mask) of the image.
BUILTIN = {"unweighted": False, "oracle": True, "handcrafted": False}

RANGE_ENDS = (0.0, 1.0)  # exact readings of dead (0) and saturated (1) detectors
MAD_TO_SIGMA = 0.6745  # median |z| of a standard normal z
PIXEL_K = 3.0  # |y − median₃ₓ₃| above 3 σ̂_b: an outlier
# A column offset above 3.5 σ̂_b/√n is a stripe: ≈ 3 std of the offset estimate, whose variance is
# σ²/n (the column mean) + ≈ 0.3 σ²/n (the median of 4 neighbouring means).
COLUMN_K = 3.5
COLUMN_WINDOW = 5  # reference: median of the 4 neighbouring column means (two adjacent stripes ok)
FLAG_FACTOR = 0.01  # flagged pixels keep 1 % of their weight: a false alarm loses little
SIGMA_FLOOR = 1e-3  # ≈ 0.26/255: a noise-free band must not get an infinite weight
MIN_DETAILS = 8  # fewer usable 2×2 blocks than this: the band's σ̂ is not estimated


def _mean_one(w: np.ndarray) -> np.ndarray:
    return (w / w.mean()).astype(np.float32)


def _image(noisy: Any) -> np.ndarray:
    y = np.asarray(noisy)
    if y.ndim != 3:
        raise ValueError(f"noisy must be a (C, H, W) array, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("noisy contains NaN or infinite values")
    return y.astype(np.float64)


def _like(a: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(a), shape)
    except ValueError:
        raise ValueError(f"{name} of shape {np.shape(a)} does not fit the image {shape}") from None


def _bool_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    m = _like(mask, shape, "mask")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask must be boolean (True = corrupted pixel) or 0/1")
        m = m.astype(bool)
    return m


def oracle_weights(sigma: Any, mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``1/σ²``, 0 on ``mask``, mean 1; uniform if every pixel is masked (see module doc)."""
    s = _like(sigma, shape, "sigma").astype(np.float64)
    m = _bool_mask(mask, shape)
    if not np.isfinite(s).all():
        raise ValueError("sigma contains NaN or infinite values")
    if np.any(s[~m] <= 0):
        raise ValueError("sigma must be > 0 on every uncorrupted pixel (1/σ² is the weight)")
    if m.all():
        return np.ones(shape, np.float32)
    w = np.zeros(shape)
    np.divide(1.0, s**2, out=w, where=~m)
    return _mean_one(w)


def range_end_mask(y: np.ndarray) -> np.ndarray:
    """Step 1: pixels exactly at an end of the data range (dead or saturated readings)."""
    return np.isin(y, RANGE_ENDS)


def estimate_band_sigma(noisy: Any, valid: Any = None) -> np.ndarray:
    """Step 2: robust σ̂ per band (C,), MAD of the diagonal Haar details over 2×2 blocks whose
    pixels are all ``valid`` (default: not at a range end)."""
    y = _image(noisy)
    ok = ~range_end_mask(y) if valid is None else _bool_mask(valid, y.shape)
    d = (y[:, :-1, :-1] - y[:, :-1, 1:] - y[:, 1:, :-1] + y[:, 1:, 1:]) / 2.0
    ok = ok[:, :-1, :-1] & ok[:, :-1, 1:] & ok[:, 1:, :-1] & ok[:, 1:, 1:]
    sig = np.full(y.shape[0], np.nan)
    for b in range(y.shape[0]):
        db = d[b][ok[b]]
        if db.size >= MIN_DETAILS:
            sig[b] = np.median(np.abs(db - np.median(db))) / MAD_TO_SIGMA
    known = np.isfinite(sig)
    sig[~known] = np.median(sig[known]) if known.any() else SIGMA_FLOOR
    return sig


def _nan_median3x3(band: np.ndarray) -> np.ndarray:
    """Median over each 3×3 window (reflecting boundary) ignoring NaN; NaN if all are NaN."""
    win = sliding_window_view(np.pad(band, 1, mode="reflect"), (3, 3))
    win = np.sort(win.reshape(*band.shape, 9), axis=-1)  # NaN sorts last
    n = np.sum(np.isfinite(win), axis=-1)
    lo = np.take_along_axis(win, np.maximum(n - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    hi = np.take_along_axis(win, (n // 2)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, (lo + hi) / 2.0, np.nan)


def _neighbour_median(m: np.ndarray) -> np.ndarray:
    """Median of the ``COLUMN_WINDOW − 1`` neighbours of each entry (edges repeated), the entry
    itself left out: a moderate stripe would often be its own median. (Not
    ``scipy.ndimage.median_filter`` with a holed footprint: SciPy 1.17's 1-D fast path ignores
    the hole.)"""
    half = COLUMN_WINDOW // 2
    win = sliding_window_view(np.pad(m, half, mode="edge"), COLUMN_WINDOW)
    return np.median(np.delete(win, half, axis=1), axis=1)


def detect_corrupted(noisy: Any, sigma_b: Any) -> np.ndarray:
    """Steps 1, 3 and 4: the (C, H, W) boolean map of pixels the recipe flags."""
    y = _image(noisy)
    sigma_b = np.maximum(np.asarray(sigma_b, dtype=np.float64).reshape(-1), SIGMA_FLOOR)
    if sigma_b.shape != (y.shape[0],):
        raise ValueError(f"sigma_b needs one value per band ({y.shape[0]}), got {sigma_b.shape}")
    ends = range_end_mask(y)
    flagged = ends.copy()
    yv = np.where(ends, np.nan, y)
    for b in range(y.shape[0]):
        r = yv[b] - _nan_median3x3(yv[b])
        with np.errstate(invalid="ignore"):
            flagged[b] |= np.abs(r) > PIXEL_K * sigma_b[b]
        n = np.sum(~ends[b], axis=0)
        if not n.any():
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.nansum(yv[b], axis=0) / n  # NaN for a column with no usable pixel
        m = np.where(n > 0, m, np.nanmedian(m))
        offset = m - _neighbour_median(m)
        stripe = (n > 0) & (np.abs(offset) > COLUMN_K * sigma_b[b] / np.sqrt(np.maximum(n, 1)))
        flagged[b][:, stripe] = True
    return flagged


def handcrafted_weights(noisy: Any) -> np.ndarray:
    """The classical recipe of the module docstring (steps 1–5), from the noisy image only."""
    y = _image(noisy)
    sigma_b = np.maximum(estimate_band_sigma(y), SIGMA_FLOOR)
    w = np.broadcast_to((1.0 / sigma_b**2)[:, None, None], y.shape).copy()
    w[detect_corrupted(y, sigma_b)] *= FLAG_FACTOR
    return _mean_one(w)


def compute_weights(
    kind: str,
    noisy: np.ndarray,
    *,
    sigma: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The (C, H, W) float32 weight map of the built-in ``kind`` (:data:`BUILTIN`) for ``noisy``.

    ``oracle`` needs ``sigma`` (true σ per pixel) and ``mask`` (True = corrupted); the other
    arguments are ignored.
    """
    if kind not in BUILTIN:
        raise ValueError(f"unknown weighting {kind!r} (built-in: {', '.join(BUILTIN)})")
    y = _image(noisy)
    if kind == "unweighted":
        return np.ones(y.shape, np.float32)
    if kind == "oracle":
        missing = [n for n, v in (("sigma", sigma), ("mask", mask)) if v is None]
        if missing:
            raise ValueError(f"the oracle weighting needs {' and '.join(missing)}")
        return oracle_weights(sigma, mask, y.shape)
    return handcrafted_weights(y)


def check_map(w: Any, shape: tuple[int, ...], label: str) -> np.ndarray:
    """A weighting's map as float32, or a :class:`ValueError` naming the weighting: the shape of
    the image, finite and ≥ 0."""
    w = np.asarray(w, dtype=np.float32)
    if w.shape != tuple(shape):
        raise ValueError(f"weighting {label} returned shape {w.shape} for an image of {shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weighting {label} returned a non-finite or negative weight")
    return w


@dataclass(frozen=True)
class Weighting:
    """One column label of the matrix: a built-in kind, or a learned method's trained part."""

    label: str  # "oracle", "dlw:nn+tv"
    method: str = ""  # the learned method's registry name ("" for the built-ins)
    variant: str = ""
    seed: int = -1  # training seed of a learned part
    path: str = ""  # its checkpoint, relative to the repository root
    oracle_informed: bool = False
    method_cls: Any = None
    net_precision: str = "fp32"  # a learned part's nets: fp32 | bf16 (resolved by the plan)

    def load(self, root: Path, device: str = "cpu") -> Any:
        """The learned part, its nets set to :attr:`net_precision`."""
        from pipeline.methods.precision import set_precision

        part = self.method_cls.load(Path(root) / self.path, device)
        return set_precision(part, self.net_precision)

    def compute(self, item: dict[str, np.ndarray], part: Any = None) -> np.ndarray | None:
        """The map for ``item`` (None for ``unweighted``: the solvers take w = None)."""
        if self.label == "unweighted":
            return None
        if self.method_cls is None:
            w = compute_weights(self.label, item["noisy"], sigma=item["sigma"], mask=item["mask"])
        else:
            w = self.method_cls.weights(part, _image(item["noisy"]))
        return check_map(w, item["noisy"].shape, self.label)


def plan_weightings(
    names: list[str], root: Path, net_precision: str = "fp32", device: str = "cpu"
) -> list[Weighting]:
    """The weightings of ``evaluate.weightings`` in order; ``<method>`` expands to every trained
    variant and seed in ``models/<method>/``, ``<method>:<variant>`` to that variant's seeds;
    learned ones run their nets at ``net_precision`` (``auto`` resolved here, once, for
    ``device``, where the maps are computed)."""
    from pipeline.evaluate.params import split_name
    from pipeline.methods.base import find_parts
    from pipeline.methods.precision import resolve_precision
    from pipeline.methods.registry import get_method

    net_precision = resolve_precision(net_precision, device)
    out = []
    for i, name in enumerate(names):
        if name in BUILTIN:
            out.append(Weighting(name, oracle_informed=BUILTIN[name]))
            continue
        head, variant = split_name(name, f"evaluate.weightings[{i}]")
        cls = get_method(head)
        if not cls.provides_weighting:
            raise ValueError(f"evaluate.weightings[{i}]: method {head!r} provides no weighting")
        if variant and not cls.provides_weighting_for(variant):
            raise ValueError(
                f"evaluate.weightings[{i}]: {name!r}: variant {variant!r} of {head!r} gives no "
                "weight map"
            )
        parts = find_parts(root, head, [variant] if variant else None)
        if not parts:
            raise ValueError(f"{root / 'models' / head}: no trained {head}; run train@{head}")
        # ``<method>``: the variants that give a weight map.
        parts = [p for p in parts if cls.provides_weighting_for(p.variant)]
        out += [
            Weighting(p.label, head, p.variant, p.seed, p.path, method_cls=cls,
                      net_precision=net_precision)
            for p in parts
        ]  # fmt: skip
    return out
