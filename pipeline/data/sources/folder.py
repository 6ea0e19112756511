"""Any folder of PNG / JPEG / TIFF / NPY images, searched recursively in sorted order.

PNG and JPEG are grey or RGB pictures (alpha dropped), whatever their size. A TIFF is a picture
when the file says so (samples per pixel, as an RGB TIFF), else a stack of bands (pages first).
NPY holds a cube in the axis order ``prepare.layout`` declares ("chw" or "hwc"); unset, the
order is told by the band count (``prepare.bands``, or 3/4 for RGB) and a file it cannot tell
is refused (:func:`pipeline.data.sources.base.array_to_chw`). uint8/uint16 are scaled by their
type's range, other integer types by their own maximum
(:func:`pipeline.data.sources.base.to_float`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.sources.base import (
    RawImage,
    array_to_chw,
    picture_to_chw,
    safe_stem,
    to_float,
)
from pipeline.io import array_sha256

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"}


def read_image(path: Path, bands: int, layout: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One file → ((C, H, W) float64, raw pixels); a clear error naming the file if unreadable."""
    suffix = path.suffix.lower()
    origin = str(path)
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
            picture = False
        elif suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                raw = series.asarray()
                # "S" (samples per pixel) last: an RGB(A) picture, as the file itself declares.
                picture = raw.ndim == 2 or (series.axes.endswith("S") and raw.ndim == 3)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
                    im = im.convert("RGB")
                raw = np.array(im)
            picture = True
    except Exception as exc:  # any decoder failure is reported the same way
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    chw = picture_to_chw(raw, origin) if picture else array_to_chw(raw, origin, layout, bands)
    return to_float(chw, origin), raw


def load_folder(
    root: str | None, names: list[str] | None, bands: int, layout: str | None = None
) -> Iterator[RawImage]:
    base = Path(root or ".")
    if not base.is_dir():
        raise ValueError(f"prepare.path = {root!r}: not a folder")
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ValueError(f"prepare.path = {root!r}: no PNG/JPEG/TIFF/NPY files found")
    seen: dict[str, Path] = {}
    for path in files:
        name = safe_stem(path.relative_to(base))
        if name in seen:
            raise ValueError(f"{path}: has the same image name {name!r} as {seen[name]}")
        seen[name] = path
        if names is not None and name not in names:
            continue
        array, raw = read_image(path, bands, layout)
        yield RawImage(name, array, str(path.relative_to(base)), array_sha256(raw))
    if names is not None:
        missing = sorted(set(names) - set(seen))
        if missing:
            raise ValueError(f"prepare.images: {missing} not found under {root!r}")
