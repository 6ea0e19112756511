"""CAVE multispectral images (Yasuma et al., Columbia University): 32 scenes of 512 × 512 pixels,
31 bands 400–700 nm in 10 nm steps, one 16-bit grey PNG per band::

    <root>/<scene>_ms/<scene>_ms/<scene>_ms_01.png … <scene>_ms_31.png

A scene is any folder holding files named ``*_NN.png``; its bands are read in NN order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.sources.base import RawImage, safe_stem, to_float
from pipeline.io import array_sha256

BAND_FILE = re.compile(r"^(?P<stem>.+)_(?P<band>\d{2})\.png$", re.IGNORECASE)


def read_band(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            raw = np.array(im)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read band image ({type(exc).__name__}: {exc})") from None
    # One CAVE scene stores its bands as RGBA images with equal colour channels.
    if raw.ndim == 3:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise ValueError(f"{path}: a band image must be 2-D, got shape {raw.shape}")
    return raw


def load_cave(
    root: str | None, names: list[str] | None, bands: int, layout: str | None = None
) -> Iterator[RawImage]:
    base = Path(root or ".")
    if not base.is_dir():
        raise ValueError(f"prepare.path = {root!r}: not a folder")
    scenes: dict[Path, list[tuple[int, Path]]] = defaultdict(list)
    stems: dict[Path, str] = {}
    for path in base.rglob("*"):
        m = BAND_FILE.match(path.name)
        if m and path.is_file():
            scenes[path.parent].append((int(m["band"]), path))
            stems[path.parent] = m["stem"]
    if not scenes:
        raise ValueError(f"prepare.path = {root!r}: no CAVE band files (*_NN.png) found")
    found = set()
    for folder in sorted(scenes):
        name = re.sub(r"_ms$", "", safe_stem(Path(stems[folder])))
        found.add(name)
        if names is not None and name not in names:
            continue
        files = sorted(scenes[folder])
        if len(files) != bands or [b for b, _ in files] != list(range(1, bands + 1)):
            raise ValueError(
                f"{folder}: CAVE scene has {len(files)} band files "
                f"(numbers {[b for b, _ in files]}), but prepare.bands = {bands}"
            )
        raws = [read_band(p) for _, p in files]
        shapes = {r.shape for r in raws}
        if len(shapes) != 1:
            raise ValueError(f"{folder}: band images differ in size {sorted(shapes)}")
        cube = np.stack([to_float(r, str(p)) for r, (_, p) in zip(raws, files, strict=True)])
        yield RawImage(name, cube, str(folder.relative_to(base)), array_sha256(np.stack(raws)))
    if names is not None and (missing := sorted(set(names) - found)):
        raise ValueError(f"prepare.images: {missing} not found under {root!r}")
