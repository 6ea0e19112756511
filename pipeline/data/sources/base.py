"""What a source yields, and conversions shared by the sources."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np


class RawImage(NamedTuple):
    """One clean image as found: ``array`` is (C, H, W) float64, in its native scale."""

    name: str  # a safe file name, unique within the source
    array: np.ndarray
    origin: str  # where it came from: "skimage:astronaut" or a path under the source root
    content_sha256: str  # hash of the raw pixels, for de-duplication by content


# Integer pixel types whose full range is the image convention (8- and 16-bit images): scaled
# by the type's maximum. Other integer types carry no such convention (an int64 array holding
# 0–255 divided by 2^63 − 1 would be all but zero), so they are scaled by their actual maximum.
IMAGE_INTEGERS = (np.uint8, np.uint16)
LAYOUTS = ("chw", "hwc")


def to_float(array: np.ndarray, origin: str) -> np.ndarray:
    """Pixels → float64: uint8/uint16 by their type's maximum (to [0, 1]); other integer types
    by the array's own maximum (non-negative values only: their range is then [0, max]);
    floats as they are. NaN or infinite values are refused, naming ``origin``."""
    a = np.asarray(array)
    if a.dtype == bool:
        out = a.astype(np.float64)
    elif a.dtype in IMAGE_INTEGERS:
        out = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi <= 0:
            raise ValueError(
                f"{origin}: {a.dtype} pixels span [{lo}, {hi}]; only uint8/uint16 images or "
                "integers ≥ 0 with a positive maximum (scaled by that maximum) are read — "
                "convert the file to float"
            )
        out = a.astype(np.float64) / float(hi)
    elif np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float64)
    else:
        raise ValueError(f"{origin}: unsupported pixel type {a.dtype}")
    if not np.isfinite(out).all():
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise ValueError(f"{origin}: contains {bad} NaN or infinite values")
    return out


def picture_to_chw(array: np.ndarray, origin: str) -> np.ndarray:
    """A picture (PNG/JPEG/RGB TIFF) is (H, W) or (H, W, 3|4) by its format: never a cube,
    whatever its height. Alpha is dropped (grey + alpha → grey)."""
    a = np.asarray(array)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[-1] in (2, 3, 4):
        keep = 1 if a.shape[-1] == 2 else 3
        return np.moveaxis(a[..., :keep], -1, 0)
    raise ValueError(
        f"{origin}: a grey or RGB picture must be (H, W) or (H, W, 3|4), got {a.shape}"
    )


def array_to_chw(
    array: np.ndarray,
    origin: str,
    layout: str | None,
    bands: int | None = None,
    hint: str = "prepare.layout",
) -> np.ndarray:
    """An array file's cube (.npy, TIFF stacks) → (C, H, W), by a declared or an unambiguous
    axis order.

    ``layout`` "chw" or "hwc" declares it. With ``layout=None`` the band axis is the first or
    the last axis, whichever alone can be one: with ``bands`` (prepare), an axis of length
    ``bands``, 3 or 4 (RGB, converted later); without (apply), the axis strictly shorter than
    both others. When both or neither can, the file is refused with a message naming it and
    ``hint`` (the option that settles it), never guessed.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise ValueError(f"{origin}: expected a 2-D or 3-D array, got shape {a.shape}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"{hint} = {layout!r}: must be one of {', '.join(LAYOUTS)} (or unset)")
    if layout is None:
        if bands is not None:
            fits = {bands, 3, 4}
            chw, hwc = a.shape[0] in fits, a.shape[2] in fits
            rule = f"a band axis of length prepare.bands = {bands} (or 3, 4 for RGB)"
        else:
            chw = a.shape[0] < min(a.shape[1], a.shape[2])
            hwc = a.shape[2] < min(a.shape[0], a.shape[1])
            rule = "the band axis being the shortest"
        if chw and hwc:
            raise ValueError(
                f"{origin}: has shape {a.shape}, which reads both as (C, H, W) and as "
                f"(H, W, C) with {rule}; declare the axis order with {hint} (chw or hwc)"
            )
        if not chw and not hwc:
            raise ValueError(
                f"{origin}: has shape {a.shape}, which reads neither as (C, H, W) nor as "
                f"(H, W, C) with {rule}"
                + ("" if bands is not None else f"; declare the axis order with {hint}")
            )
        layout = "chw" if chw else "hwc"
    return a if layout == "chw" else np.moveaxis(a, -1, 0)


def safe_stem(relpath: Path) -> str:
    """A file name from a relative path: separators and odd characters become '_'."""
    stem = "_".join(relpath.with_suffix("").parts)
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._-") or "image"
    return stem[:120]
