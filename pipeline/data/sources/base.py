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


def to_float(array: np.ndarray, origin: str) -> np.ndarray:
    """Integers to [0, 1] by their type's range; floats as they are (checked finite)."""
    a = np.asarray(array)
    if a.dtype == bool:
        out = a.astype(np.float64)
    elif np.issubdtype(a.dtype, np.integer):
        out = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    elif np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float64)
    else:
        raise ValueError(f"{origin}: unsupported pixel type {a.dtype}")
    if not np.isfinite(out).all():
        raise ValueError(f"{origin}: contains NaN or infinite values")
    return out


def to_chw(array: np.ndarray, bands: int, origin: str) -> np.ndarray:
    """(H, W) → (1, H, W); (H, W, C) or (C, H, W) → (C, H, W), using ``bands`` to tell which."""
    a = np.asarray(array)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise ValueError(f"{origin}: expected a 2-D or 3-D array, got shape {a.shape}")
    if a.shape[0] == bands and a.shape[-1] != bands:
        return a
    if a.shape[-1] in (bands, 3, 4) and a.shape[0] not in (bands,):
        a = a[..., :3] if a.shape[-1] == 4 and bands != 4 else a
        return np.moveaxis(a, -1, 0)
    if a.shape[0] == bands:
        return a
    raise ValueError(
        f"{origin}: has shape {a.shape}, which is neither (C, H, W) nor (H, W, C) with "
        f"C = prepare.bands = {bands} (or an RGB image)"
    )


def safe_stem(relpath: Path) -> str:
    """A file name from a relative path: separators and odd characters become '_'."""
    stem = "_".join(relpath.with_suffix("").parts)
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._-") or "image"
    return stem[:120]
