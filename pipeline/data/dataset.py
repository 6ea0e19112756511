"""The ``prepare`` stage: clean images → tiles → ``data/clean/{train,val,test}/`` + manifest.

Per image: rescale (anti-aliased) → convert to ``prepare.bands`` bands (RGB → grey by luminance,
RGB → synthetic cube by :mod:`pipeline.data.synthetic`) → seeded tiles, skipping near-black ones
→ normalise (min-max per crop by default) → quantise to ``quantize_bits`` bits → float32 .npy.
Images are de-duplicated by content first, and splits are drawn by image, never by tile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.params import PrepareParams
from pipeline.data.sources import SOURCES, RawImage
from pipeline.io import array_sha256, atomic_dir, json_sha256, save_npy, write_parquet
from pipeline.schema import to_plain
from pipeline.seeding import rng_for

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as skimage.color.rgb2gray's ancestor
TILE_TRIES = 500


@dataclass
class Tile:
    image: str
    index: int
    array: np.ndarray  # (C, H, W) float32, quantised
    y: int
    x: int
    synthetic: bool
    effective_rank: int | None


@dataclass
class PrepareSummary:
    dataset_hash: str = ""
    synthetic: bool = False
    images: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    duplicates_removed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    effective_rank: dict[str, float] = field(default_factory=dict)


def convert_bands(
    x: np.ndarray, p: PrepareParams, seed: int, origin: str
) -> tuple[np.ndarray, bool]:
    """(C, H, W) → (``p.bands``, H, W); returns the array and whether it is synthetic."""
    c = x.shape[0]
    if c == p.bands:
        return x, False
    if c in (3, 4) and p.bands == 1:
        return np.sum(x[:3] * LUMA[:, None, None], axis=0, keepdims=True), False
    if c in (3, 4) and p.bands > 3:
        from pipeline.data.synthetic import rgb_to_cube

        rgb = np.clip(x[:3].transpose(1, 2, 0) / max(float(x[:3].max()), 1e-12), 0.0, 1.0)
        cube = rgb_to_cube(
            rgb,
            bands=p.bands,
            n_endmembers=p.n_endmembers,
            seed=seed,
            temperature=p.temperature,
        )
        return cube, True
    raise ValueError(f"{origin}: has {c} band(s), but prepare.bands = {p.bands}")


def gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    """Normalised Gaussian weights ``exp(-x² / 2σ²)``, x = −radius … radius, float64.

    The same kernel as ``scipy.ndimage.gaussian_filter1d`` (its argument is evaluated the same
    way, ``x · (x · c)`` with ``c = −0.5 / σ²``), but each ``exp`` is computed with
    :mod:`decimal`, which rounds correctly, instead of ``np.exp``: NumPy evaluates float64
    ``exp`` with AVX-512 code on CPUs that have it and with the C library elsewhere, and the two
    differ in the last bit for some arguments, which made the weights depend on the machine.
    """
    import decimal

    c = -0.5 / (sigma * sigma)
    ctx = decimal.Context(prec=40)
    phi = np.array(
        [
            float(ctx.exp(decimal.Decimal(x * (x * c))))
            for x in map(float, range(-radius, radius + 1))
        ]
    )
    return phi / phi.sum()


def rescale(x: np.ndarray, scale: float) -> np.ndarray:
    """Anti-aliased bilinear down-scaling of a (C, H, W) image, as ``skimage.transform.rescale``
    (``order=1, anti_aliasing=True, mode="reflect", preserve_range=True``) computes it.

    Output size ``round(scale · H) × round(scale · W)``; a Gaussian of standard deviation
    ``(H_in / H_out − 1) / 2`` per axis (scikit-image's rule), truncated at 4σ, is applied
    first, then ``scipy.ndimage.zoom`` (linear, grid mode, mirror boundary), clipped to the
    input's range. Written out so that the Gaussian's weights come from :func:`gaussian_kernel`
    (machine independent) and every remaining step is +, ×, ÷ in a fixed order.
    """
    if scale == 1.0:
        return x
    from scipy import ndimage

    hwc = np.moveaxis(np.asarray(x, dtype=np.float64), 0, -1)
    in_shape = np.array(hwc.shape, dtype=np.float64)
    out_shape = np.array([max(round(scale * n), 1) for n in hwc.shape[:2]] + [hwc.shape[2]])
    factors = np.divide(in_shape, out_shape)
    filtered = hwc
    for axis in (0, 1):
        sigma = max(0.0, float((factors[axis] - 1) / 2))
        if sigma > 1e-15:
            weights = gaussian_kernel(sigma, int(4.0 * sigma + 0.5))[::-1]
            filtered = ndimage.correlate1d(filtered, weights, axis, mode="mirror", cval=0.0)
    zoom = [1 / f for f in factors]
    out = ndimage.zoom(filtered, zoom, order=1, mode="mirror", cval=0.0, grid_mode=True)
    np.clip(out, hwc.min(), hwc.max(), out=out)
    return np.moveaxis(out, -1, 0)


def normalize(t: np.ndarray, how: str, origin: str) -> np.ndarray | None:
    """Min-max per crop or per band; ``None`` for a constant crop (nothing to normalise)."""
    if how == "none":
        if t.min() < 0 or t.max() > 1:
            raise ValueError(
                f"{origin}: values span [{t.min():g}, {t.max():g}], outside [0, 1]; "
                "use prepare.normalize = crop or band"
            )
        return t
    axes = None if how == "crop" else (1, 2)
    lo = t.min(axis=axes, keepdims=True)
    span = t.max(axis=axes, keepdims=True) - lo
    if np.any(span <= 0):
        return None
    return (t - lo) / span


def quantize(t: np.ndarray, bits: int) -> np.ndarray:
    """Round to ``bits``-bit levels so tiny floating-point differences between machines
    (BLAS, SIMD) cannot change the stored arrays or their hashes."""
    levels = float(2**bits - 1)
    return (np.round(np.clip(t, 0.0, 1.0) * levels) / levels).astype(np.float32)


def make_tiles(raw: RawImage, p: PrepareParams, seed: int) -> list[Tile]:
    from pipeline.data.synthetic import effective_rank

    x, synthetic = convert_bands(rescale(raw.array, p.scale), p, seed, raw.origin)
    _, h, w = x.shape
    size_h, size_w = (h, w) if p.tile_size is None else (p.tile_size, p.tile_size)
    if size_h > h or size_w > w:
        raise ValueError(
            f"prepare.tile_size = {p.tile_size}: larger than image {raw.origin} "
            f"({h} × {w} after prepare.scale = {p.scale})"
        )
    rng = rng_for(seed, "prepare", "tile", raw.name)
    peak = max(float(x.max()), 1e-12)
    tiles: list[Tile] = []
    for _ in range(TILE_TRIES):
        if len(tiles) == p.tiles_per_image:
            break
        y0 = int(rng.integers(0, h - size_h + 1))
        x0 = int(rng.integers(0, w - size_w + 1))
        crop = x[:, y0 : y0 + size_h, x0 : x0 + size_w]
        # ERGAS divides by band means: near-black crops would dominate it (docs/conventions.md).
        if crop.mean() / peak < p.min_mean:
            continue
        norm = normalize(crop, p.normalize, raw.origin)
        if norm is None:
            continue
        arr = quantize(norm, p.quantize_bits)
        rank = effective_rank(arr) if arr.shape[0] > 1 else None
        # A synthetic tile must not flatter low-rank models
        # (docs/conventions.md); real data is as it is.
        if synthetic and rank is not None and rank < p.min_effective_rank:
            continue
        tiles.append(Tile(raw.name, len(tiles), arr, y0, x0, synthetic, rank))
        if p.tile_size is None:
            break
    return tiles


def assign_splits(names: list[str], p: PrepareParams, seed: int) -> dict[str, str]:
    counts = {s: getattr(p.split, s) for s in SPLITS}
    if sum(counts.values()) > len(names):
        raise ValueError(
            f"prepare.split = {counts}: asks for {sum(counts.values())} images, "
            f"but only {len(names)} usable images were found ({', '.join(sorted(names))})"
        )
    order = rng_for(seed, "prepare", "split").permutation(len(names))
    ranked = [sorted(names)[i] for i in order]
    out, start = {}, 0
    for split in SPLITS:
        for name in ranked[start : start + counts[split]]:
            out[name] = split
        start += counts[split]
    return out


def prepare(p: PrepareParams, seed: int, out: str | Path = "data/clean", progress: bool = True):
    """Run the stage; returns ``(manifest DataFrame, PrepareSummary)``."""
    import pandas as pd
    from tqdm import tqdm

    out = Path(out)
    summary = PrepareSummary()
    loader = SOURCES[p.source]
    by_hash: dict[str, str] = {}
    tiles: dict[str, list[Tile]] = {}
    origins: dict[str, RawImage] = {}
    bar = tqdm(
        loader(p.path, p.images, p.bands, p.layout),
        desc=f"prepare: {p.source} images → tiles",
        unit="image",
        disable=not progress,
    )
    for raw in bar:
        bar.set_postfix_str(raw.name)
        if raw.content_sha256 in by_hash:
            summary.duplicates_removed[raw.name] = by_hash[raw.content_sha256]
            log.warning(
                "prepare: %s has the same pixels as %s; dropped",
                raw.name,
                by_hash[raw.content_sha256],
            )
            continue
        by_hash[raw.content_sha256] = raw.name
        made = make_tiles(raw, p, seed)
        if len(made) < p.tiles_per_image:
            summary.skipped[raw.name] = (
                f"only {len(made)} of {p.tiles_per_image} tiles with mean ≥ "
                f"{p.min_mean} × image maximum (and, if synthetic, effective rank ≥ "
                f"{p.min_effective_rank})"
            )
            log.warning("prepare: %s skipped (%s)", raw.name, summary.skipped[raw.name])
            continue
        tiles[raw.name] = made
        origins[raw.name] = raw._replace(array=np.empty(0))
    splits = assign_splits(list(tiles), p, seed)
    summary.unused = sorted(set(tiles) - set(splits))
    rows: list[dict[str, Any]] = []
    with atomic_dir(out) as tmp:
        for name in sorted(splits):
            split = splits[name]
            for t in tiles[name]:
                image_id = name if p.tiles_per_image == 1 else f"{name}-t{t.index}"
                rel = out / split / f"{image_id}.npy"
                save_npy(tmp / split / f"{image_id}.npy", t.array)
                c, h, w = t.array.shape
                rows.append(
                    {
                        "image_id": image_id,
                        "source_image": name,
                        "tile": t.index,
                        "split": split,
                        "source": p.source,
                        "origin": origins[name].origin,
                        "path": rel.as_posix(),
                        "channels": c,
                        "height": h,
                        "width": w,
                        "crop_y": t.y,
                        "crop_x": t.x,
                        "scale": p.scale,
                        "sha256": array_sha256(t.array),
                        "content_sha256": origins[name].content_sha256,
                        "synthetic": t.synthetic,
                        "effective_rank": t.effective_rank,
                    }
                )
        df = pd.DataFrame(rows).sort_values(["split", "image_id"], kind="stable")
        df = df.reset_index(drop=True)
        summary.dataset_hash = json_sha256(df[["image_id", "split", "sha256"]].values.tolist())
        summary.synthetic = bool(df["synthetic"].any())
        summary.images = {s: int(df.loc[df.split == s, "source_image"].nunique()) for s in SPLITS}
        summary.files = {s: int((df.split == s).sum()) for s in SPLITS}
        ranks = df["effective_rank"].dropna()
        if len(ranks):
            summary.effective_rank = {
                "min": float(ranks.min()),
                "mean": float(ranks.mean()),
                "max": float(ranks.max()),
            }
        meta = {
            "stage": "prepare",
            "seed": seed,
            "params": to_plain(p),
            "dataset_hash": summary.dataset_hash,
            "synthetic": summary.synthetic,
        }
        # Uncompressed: a few kB, and no compression library in the bytes.
        write_parquet(tmp / "manifest.parquet", df, meta, compression="none")
    return df, summary


def read_manifest(path: str | Path = "data/clean/manifest.parquet"):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no clean-image manifest; run the prepare stage first")
    return pd.read_parquet(path)
