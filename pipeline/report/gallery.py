"""The gallery of ``reports/gallery.parquet``: clean, noisy, weight maps and restored bands as
inline PNG images, laid out per (case, image) with weightings as columns and restorers as rows.

PNG bytes come from a minimal encoder (8-bit grey or RGB, one IDAT chunk, zlib level 9, no
ancillary chunks), so identical arrays always give identical bytes.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from html import escape

import numpy as np
import pandas as pd

KINDS = ("clean", "noisy", "weight", "restored")


def esc(s) -> str:
    return escape(str(s), quote=True)


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of a uint8 (H, W) grey or (H, W, 3) RGB image."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        colour_type = 0
    elif img.ndim == 3 and img.shape[2] == 3:
        colour_type = 2
    else:
        raise ValueError(f"need an (H, W) or (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    rows = img.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def data_uri(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def band_array(row, max_px: int, source: str = "gallery") -> np.ndarray:
    """The stored band as a float (H, W) array, block-averaged to at most ``max_px`` a side."""
    h, w = int(row["height"]), int(row["width"])
    values = np.asarray(row["values"], dtype=np.float32)
    if values.size != h * w:
        raise ValueError(
            f"{source}: {row['kind']} band of {row['image_id']!r} ({row['case']!r}) holds "
            f"{values.size} values, not height × width = {h} × {w}"
        )
    a = values.reshape(h, w).astype(np.float64)
    f = math.ceil(max(h, w) / max_px)
    if f > 1:
        # Block means keep a large image's statistics while keeping the page small.
        a = a[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return a


def grey(a: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] (data range 1) as 8-bit grey; NaN shows black."""
    return np.round(np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)


def weight_rgb(a: np.ndarray) -> tuple[np.ndarray, float]:
    """A weight map in viridis from 0 to its 99th percentile (weights have mean 1 and a long
    upper tail); returns the image and that upper limit."""
    import matplotlib

    finite = a[np.isfinite(a)]
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    x = np.clip(np.nan_to_num(a, nan=0.0) / vmax, 0.0, 1.0)
    rgba = matplotlib.colormaps["viridis"](x)
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8), vmax


def _figure(img_uri: str, caption: str, alt: str) -> str:
    return (
        f'<figure><img class="tile" src="{img_uri}" alt="{esc(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def gallery_html(
    gallery: pd.DataFrame | None,
    mpsnr: dict[tuple[str, str, str, str], float],
    noisy: dict[tuple[str, str], float],
    cases: list[str],
    max_px: int = 256,
) -> str:
    """HTML of the gallery. ``mpsnr[(case, image_id, restorer, weighting)]`` (seeds averaged) and
    ``noisy[(case, image_id)]`` label the images with their whole-cube MPSNR."""
    if gallery is None or gallery.empty:
        return "<p>No gallery rows (reports/gallery.parquet is empty).</p>"
    g = gallery.copy()
    for col in ("case", "image_id", "kind", "weighting", "restorer"):
        g[col] = g[col].astype(str)
    order = {c: i for i, c in enumerate(cases)}
    parts = []
    pairs = sorted(
        {(c, i) for c, i in zip(g["case"], g["image_id"], strict=True)},
        key=lambda ci: (order.get(ci[0], len(order)), ci[0], ci[1]),
    )
    for case, image_id in pairs:
        rows = g[(g["case"] == case) & (g["image_id"] == image_id)]
        parts.append(_strip(rows, case, image_id, mpsnr, noisy, max_px))
    return "\n".join(parts)


def _strip(rows, case, image_id, mpsnr, noisy, max_px) -> str:
    band = sorted({str(b) for b in rows["band"]})
    head = (
        f"<h3>Case {esc(case)}, image {esc(image_id)} "
        f"<small>(band {esc(', '.join(band))} as stored: the most corrupted one)</small></h3>"
    )
    refs = []
    for kind in ("clean", "noisy"):
        r = rows[rows["kind"] == kind]
        if len(r):
            a = band_array(r.iloc[0], max_px)
            cap = esc(kind)
            if kind == "noisy" and (case, image_id) in noisy:
                cap += f", {noisy[(case, image_id)]:.2f} dB"
            refs.append(_figure(data_uri(grey(a)), cap, f"{kind} {image_id}"))
    weights = rows[rows["kind"] == "weight"]
    restored = rows[rows["kind"] == "restored"]
    cols = sorted(set(weights["weighting"]) | set(restored["weighting"]), key=_weighting_order)
    restorers = sorted(set(restored["restorer"]))
    out = [head, '<div class="strip">', *refs, "</div>"]
    if not cols:
        return "\n".join(out)
    out.append('<div class="scroll"><table class="gallery"><thead><tr><th></th>')
    out += [f"<th>{esc(w)}</th>" for w in cols]
    out.append("</tr></thead><tbody>")
    if len(weights):
        out.append("<tr><th>weight map</th>")
        for w in cols:
            r = weights[weights["weighting"] == w]
            if len(r):
                img, vmax = weight_rgb(band_array(r.iloc[0], max_px))
                cap = f"0 (dark) … {vmax:.2f} (yellow)"
                out.append(f"<td>{_figure(data_uri(img), cap, f'weights {w}')}</td>")
            else:
                out.append("<td></td>")
        out.append("</tr>")
    for t in restorers:
        out.append(f"<tr><th>restored: {esc(t)}</th>")
        for w in cols:
            r = restored[(restored["weighting"] == w) & (restored["restorer"] == t)]
            if len(r):
                a = band_array(r.iloc[0], max_px)
                v = mpsnr.get((case, image_id, t, w), math.nan)
                cap = f"{v:.2f} dB" if math.isfinite(v) else "MPSNR n/a"
                out.append(f"<td>{_figure(data_uri(grey(a)), cap, f'restored {t} {w}')}</td>")
            else:
                out.append("<td></td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _weighting_order(w: str) -> tuple[int, str]:
    fixed = {"unweighted": 0, "handcrafted": 1, "oracle": 2}
    return (fixed.get(w, 3), w)
