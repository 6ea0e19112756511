"""The page's images: PNG bytes through Pillow, placed inline (``data:`` URIs) or as files.

:func:`png_bytes` encodes an 8-bit grey or RGB array (Pillow, no ancillary chunks, so
identical arrays give identical bytes on one machine; Pillow's bundled compressor may choose
other bytes for the same pixels on another CPU, which changes no pixel). An
:class:`ImageStore` collects every image of the page under a content-derived name;
:meth:`ImageStore.sources` then decides, once the total is known, whether the page embeds
them (self-contained, the default) or links them relatively under ``figures/page/`` because
they exceed ``report.inline_images_max_mb``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field

import numpy as np

# Where external images go, relative to the page (reports/index.html).
FIGURES_DIR = "figures/page"


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of a uint8 (H, W) grey or (H, W, 3) RGB image, through Pillow."""
    from PIL import Image

    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        mode = "L"
    elif img.ndim == 3 and img.shape[2] == 3:
        mode = "RGB"
    else:
        raise ValueError(f"need an (H, W) or (H, W, 3) image, got shape {img.shape}")
    buf = io.BytesIO()
    Image.fromarray(img, mode=mode).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


@dataclass
class ImageStore:
    """Every image of one page, keyed by a name derived from its bytes (so the same picture is
    stored once and the names never depend on the order of rendering)."""

    images: dict[str, bytes] = field(default_factory=dict)

    def add(self, png: bytes | None) -> str | None:
        """Register ``png``; returns its key (``None`` for no image)."""
        if not png:
            return None
        key = hashlib.sha256(png).hexdigest()[:20] + ".png"
        self.images[key] = png
        return key

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.images.values())

    def inline(self, max_mb: float) -> bool:
        """Whether the page embeds its images: their total stays within ``max_mb`` MiB."""
        return self.total_bytes <= max_mb * 2**20

    def sources(self, inline: bool) -> dict[str, str]:
        """``src`` of every key: a ``data:`` URI, or ``figures/page/<key>`` (relative)."""
        if inline:
            return {
                k: "data:image/png;base64," + base64.b64encode(v).decode("ascii")
                for k, v in self.images.items()
            }
        return {k: f"{FIGURES_DIR}/{k}" for k in self.images}
