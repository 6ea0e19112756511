"""Any folder of PNG / JPEG / TIFF / NPY images, searched recursively in sorted order.

PNG and JPEG are grey or RGB (alpha dropped). TIFF and NPY may hold a cube, as (C, H, W) or
(H, W, C), where C must equal ``prepare.bands``. Integers are scaled by their type's range.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.sources.base import RawImage, safe_stem, to_chw, to_float
from pipeline.io import array_sha256

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy"}


def read_image(path: Path, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """One file → ((C, H, W) float64, raw pixels); a clear error naming the file if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            raw = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("P", "RGBA", "LA", "CMYK", "YCbCr"):
                    im = im.convert("RGB")
                raw = np.array(im)
    except Exception as exc:  # any decoder failure is reported the same way
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    return to_float(to_chw(raw, bands, str(path)), str(path)), raw


def load_folder(root: str | None, names: list[str] | None, bands: int) -> Iterator[RawImage]:
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
        array, raw = read_image(path, bands)
        yield RawImage(name, array, str(path.relative_to(base)), array_sha256(raw))
    if names is not None:
        missing = sorted(set(names) - set(seen))
        if missing:
            raise ValueError(f"prepare.images: {missing} not found under {root!r}")
