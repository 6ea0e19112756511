"""Photographs bundled inside scikit-image: real, offline, and small (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.data.sources.base import RawImage, to_float
from pipeline.io import array_sha256

# name in params → scikit-image loader function name (an explicit list: params never name code)
EMBEDDED = {
    "astronaut": "astronaut",
    "brick": "brick",
    "camera": "camera",
    "cat": "cat",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "coins": "coins",
    "grass": "grass",
    "gravel": "gravel",
    "hubble_deep_field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "moon": "moon",
    "motorcycle_left": "stereo_motorcycle",
    "retina": "retina",
    "rocket": "rocket",
}


def load_embedded(
    root: str | None, names: list[str] | None, bands: int, layout: str | None = None
) -> Iterator[RawImage]:
    import skimage.data

    for name in names or sorted(EMBEDDED):
        if name not in EMBEDDED:
            raise ValueError(
                f"prepare.images: {name!r} is not an embedded image "
                f"(known: {', '.join(sorted(EMBEDDED))})"
            )
        image = getattr(skimage.data, EMBEDDED[name])()
        if name == "motorcycle_left":
            image = image[0]
        origin = f"skimage:{name}"
        chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        yield RawImage(name, to_float(chw, origin), origin, array_sha256(image))
