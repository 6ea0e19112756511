"""The gallery of ``reports/gallery.parquet``: clean, noisy, weight maps and restored bands, laid
out per (case, image) with weightings as columns and restorers as rows; images are PNG through
Pillow (:mod:`pipeline.report.images`) and every figure has an id the detailed tables link to.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.report.images import ImageStore, png_bytes
from pipeline.report.view import gallery_anchor

KINDS = ("clean", "noisy", "weight", "restored")


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


def weight_rgb(a: np.ndarray, vmax: float | None = None) -> tuple[np.ndarray, float]:
    """A weight map in viridis from 0 to its 99th percentile (weights have mean 1 and a long
    upper tail), or to ``vmax`` when given (maps compared on one scale); returns the image and
    that upper limit."""
    import matplotlib

    if vmax is None:
        finite = a[np.isfinite(a)]
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    x = np.clip(np.nan_to_num(a, nan=0.0) / vmax, 0.0, 1.0)
    rgba = matplotlib.colormaps["viridis"](x)
    return np.round(rgba[..., :3] * 255.0).astype(np.uint8), vmax


def gallery_view(
    gallery: pd.DataFrame | None,
    mpsnr: dict[tuple[str, str, str, str], float],
    noisy: dict[tuple[str, str], float],
    cases: list[str],
    tasks: dict[str, str],
    store: ImageStore,
    max_px: int = 256,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], list[str]]]:
    """The gallery's strips (one per case and image; images registered in ``store``) and, per
    (case, restorer, weighting), the ids of its restored figures. ``mpsnr[(case, image_id,
    restorer, weighting)]`` (seeds averaged) and ``noisy[(case, image_id)]`` label the images
    with their whole-cube MPSNR."""
    if gallery is None or gallery.empty:
        return [], {}
    g = gallery.copy()
    for col in ("case", "image_id", "kind", "weighting", "restorer"):
        g[col] = g[col].astype(str)
    order = {c: i for i, c in enumerate(cases)}
    pairs = sorted(
        {(c, i) for c, i in zip(g["case"], g["image_id"], strict=True)},
        key=lambda ci: (order.get(ci[0], len(order)), ci[0], ci[1]),
    )
    strips, links = [], {}
    for case, image_id in pairs:
        rows = g[(g["case"] == case) & (g["image_id"] == image_id)]
        strip = _strip(rows, case, image_id, mpsnr, noisy, store, max_px)
        strip["task"] = tasks.get(case, "denoise")
        strips.append(strip)
        for row in strip["rows"]:
            for fig in row["cells"]:
                if fig is not None and fig["restorer"] not in ("weight", "sigma"):
                    key = (case, fig["restorer"], fig["weighting"])
                    links.setdefault(key, []).append(fig["id"])
    return strips, links


def _figure(store, img, caption, alt, case, image_id, restorer, weighting) -> dict[str, Any]:
    return {
        "id": gallery_anchor(case, image_id, restorer, weighting),
        "key": store.add(png_bytes(img)),
        "caption": caption,
        "alt": alt,
        "restorer": restorer,
        "weighting": weighting,
    }


def _strip(rows, case, image_id, mpsnr, noisy, store, max_px) -> dict[str, Any]:
    refs = []
    for kind in ("clean", "noisy"):
        r = rows[rows["kind"] == kind]
        if len(r):
            a = band_array(r.iloc[0], max_px)
            cap = kind
            if kind == "noisy" and (case, image_id) in noisy:
                cap += f", {noisy[(case, image_id)]:.2f} dB"
            refs.append(_figure(store, grey(a), cap, f"{kind} {image_id}", case, image_id,
                                kind, kind))  # fmt: skip
    weights = rows[rows["kind"] == "weight"]
    restored = rows[rows["kind"] == "restored"]
    cols = sorted(set(weights["weighting"]) | set(restored["weighting"]), key=_weighting_order)
    out_rows = []
    if len(weights):
        cells = []
        for w in cols:
            r = weights[weights["weighting"] == w]
            if len(r):
                img, vmax = weight_rgb(band_array(r.iloc[0], max_px))
                cap = f"0 (dark) … {vmax:.2f} (yellow)"
                cells.append(_figure(store, img, cap, f"weights {w}", case, image_id, "weight", w))
            else:
                cells.append(None)
        out_rows.append({"label": "weight map", "cells": cells})
    sigmas = rows[rows["kind"] == "sigma"]
    if len(sigmas):
        # The true σ under the oracle (whose weights are 1/σ²) and each learned σ̂ under its
        # weighting, on one scale: 0 … the largest σ of the strip.
        arrays = {w: band_array(sigmas[sigmas["weighting"] == w].iloc[0], max_px)
                  for w in set(sigmas["weighting"])}  # fmt: skip
        top = max(float(np.nanmax(a)) for a in arrays.values())
        cells = []
        for w in cols:
            if w in arrays:
                img, vmax = weight_rgb(arrays[w], top)
                name = "true σ" if w == "oracle" else "σ̂"
                cap = f"{name}: 0 … {255 * vmax:.1f}/255"
                cells.append(_figure(store, img, cap, f"{name} {w}", case, image_id, "sigma", w))
            else:
                cells.append(None)
        out_rows.append({"label": "noise level σ", "cells": cells})
    for t in sorted(set(restored["restorer"])):
        cells = []
        for w in cols:
            r = restored[(restored["weighting"] == w) & (restored["restorer"] == t)]
            if len(r):
                a = band_array(r.iloc[0], max_px)
                v = mpsnr.get((case, image_id, t, w), math.nan)
                cap = f"{v:.2f} dB" if math.isfinite(v) else "MPSNR n/a"
                cells.append(_figure(store, grey(a), cap, f"restored {t} {w}", case, image_id,
                                     t, w))  # fmt: skip
            else:
                cells.append(None)
        out_rows.append({"label": f"restored: {t}", "cells": cells})
    return {
        "case": case,
        "image_id": image_id,
        "bands": ", ".join(sorted({str(b) for b in rows["band"]})),
        "refs": refs,
        "columns": cols,
        "rows": out_rows,
    }


def _weighting_order(w: str) -> tuple[int, str]:
    fixed = {"unweighted": 0, "handcrafted": 1, "oracle": 2}
    return (fixed.get(w, 3), w)
