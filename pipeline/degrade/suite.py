"""The ``degrade`` stage: fixed, seeded evaluation sets for every case of the suite.

For each split in ``degrade.splits``, case and clean image, the noisy image is drawn with
``rng_for(seed, "degrade", split, case label, image_id)``: the draws of one case never depend on
another case, so changing one case's parameters changes only that case's files.
Each file ``data/degraded/<split>/<case>/<image_id>.npz`` holds ``noisy`` (float32), ``sigma``
(the true σ map, float32) and ``mask`` (corrupted pixels, bool), all (C, H, W) on y's grid; a case
with an operator (``blur-g1.6/noniid``: a nested folder) adds the arrays that rebuild it
(:mod:`pipeline.degrade.tasks`).
"""

from __future__ import annotations

import decimal
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.degrade.params import DegradeParams
from pipeline.degrade.tasks import operator_hash_arrays
from pipeline.io import (
    array_sha256,
    atomic_dir,
    load_npy,
    read_parquet_meta,
    save_npz,
    write_parquet,
)
from pipeline.schema import to_plain
from pipeline.seeding import rng_for

DEGRADED_KEYS = ("noisy", "sigma", "mask")
_DECIMAL = decimal.Context(prec=40)


def portable_mpsnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """MPSNR, the mean over bands b of ``10 log10(R² / MSE_b)`` (as
    :func:`pipeline.evaluate.metrics.mpsnr`), computed to the same float on every machine.

    This value is stored in ``data/degraded/manifest.parquet``, whose bytes must not depend on
    the CPU. ``np.log10`` does: NumPy evaluates float64 ``log10`` with AVX-512 (SVML) code on CPUs
    that have it and with the C library elsewhere, and the results differ in the last bit for
    about 6 % of arguments, which changed the manifest (and so ``data/degraded``'s hash) between
    machines. Here each MSE is an exactly rounded sum (``math.fsum``) of correctly rounded
    squares, the logarithm is :mod:`decimal`'s (correctly rounded, integer arithmetic only),
    and the mean is again an ``fsum``. It agrees with ``metrics.mpsnr`` to ~1e-14 relative.
    """
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    sq = (d * d).reshape(d.shape[0], -1)
    r2 = decimal.Decimal(data_range) * decimal.Decimal(data_range)
    psnr = []
    for band in sq:
        mse = math.fsum(band.tolist()) / band.size
        if mse == 0.0:
            psnr.append(math.inf)
            continue
        psnr.append(
            float(_DECIMAL.multiply(10, _DECIMAL.divide(r2, decimal.Decimal(mse)).log10(_DECIMAL)))
        )
    return math.fsum(psnr) / len(psnr)


def on_clean_grid(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """y on the clean image's grid, for the degraded MPSNR: itself, or for a down-sampled y each
    sample repeated f × f (nearest neighbour; sample (i, j) was taken at pixel (f i, f j))."""
    if y.shape == tuple(shape):
        return y
    f = shape[-1] // y.shape[-1]
    return np.repeat(np.repeat(y, f, axis=-2), f, axis=-1)


def load_clean(row: Any, root: str | Path = ".") -> np.ndarray:
    """A clean image from the manifest, checked against its recorded hash."""
    path = Path(root) / row["path"]
    x = load_npy(path)
    if array_sha256(x) != row["sha256"]:
        raise ValueError(f"{path}: content does not match the manifest's sha256; rerun prepare")
    return x


def degrade(
    p: DegradeParams,
    seed: int,
    manifest,
    clean_meta: dict[str, Any],
    out: str | Path = "data/degraded",
    root: str | Path = ".",
    progress: bool = True,
):
    """Run the stage; returns ``(manifest DataFrame, examples)`` where ``examples`` maps each case
    label to ``(clean, noisy, info)`` for the figure's image."""
    import pandas as pd
    from tqdm import tqdm

    out = Path(out)
    figure_id = p.figure_image or next(iter(manifest.loc[manifest.split == "test", "image_id"]))
    if figure_id not in set(manifest.loc[manifest.split == "test", "image_id"]):
        raise ValueError(f"degrade.figure_image = {figure_id!r}: not a test image")
    jobs = [
        (split, case, row)
        for split in p.splits
        for case in p.cases
        for _, row in manifest[manifest.split == split].iterrows()
    ]
    rows, examples = [], {}
    cache: dict[str, np.ndarray] = {}
    with atomic_dir(out) as tmp:
        for split, case, row in tqdm(
            jobs, desc="degrade: drawing noisy evaluation sets", unit="image", disable=not progress
        ):
            image_id = row["image_id"]
            if image_id not in cache:
                cache[image_id] = load_clean(row, root)
            x = cache[image_id]
            y, info = case(x, rng_for(seed, "degrade", split, case.label, image_id))
            rel = out / split / case.label / f"{image_id}.npz"
            arrays = {"noisy": y, "sigma": info["sigma"], "mask": info["mask"]}
            arrays.update(info.get("operator", {}))
            save_npz(tmp / split / case.label / f"{image_id}.npz", arrays)
            rows.append(
                {
                    "split": split,
                    "case": case.label,
                    "noise_model": case.name,
                    "case_params": case.params_json,
                    "image_id": image_id,
                    "path": rel.as_posix(),
                    "clean_path": row["path"],
                    "seed": seed,
                    "sha256": array_sha256(
                        *(arrays[k] for k in DEGRADED_KEYS), *operator_hash_arrays(arrays)
                    ),
                    "clean_sha256": row["sha256"],
                    "task": case.task,
                    "operator": "identity" if case.operator is None else case.operator.name,
                    "noisy_mpsnr": portable_mpsnr(x, on_clean_grid(y, x.shape)),
                    # Exactly rounded sums: the same float whatever the summation order.
                    "sigma_mean_255": math.fsum(info["sigma"].ravel().tolist())
                    / info["sigma"].size
                    * 255.0,
                    "corrupted_fraction": int(np.count_nonzero(info["mask"])) / info["mask"].size,
                    "synthetic": bool(row["synthetic"]),
                    "draws": json.dumps(info["draws"], sort_keys=True),
                }
            )
            if split == "test" and image_id == figure_id:
                examples[case.label] = (x, y, info)
        df = pd.DataFrame(rows)
        meta = {
            "stage": "degrade",
            "seed": seed,
            "params": to_plain(p),
            "dataset_hash": clean_meta.get("dataset_hash"),
            "synthetic": bool(clean_meta.get("synthetic", False)),
            "figure_image": figure_id,
        }
        # Uncompressed: a few kB, and no compression library in the bytes.
        write_parquet(tmp / "manifest.parquet", df, meta, compression="none")
    return df, examples, figure_id


def summarize(df) -> dict[str, Any]:
    """Mean noisy MPSNR and corrupted fraction per split and case (for ``dvc metrics``)."""
    out: dict[str, Any] = {}
    for (split, case), g in df.groupby(["split", "case"], sort=True):
        out.setdefault(split, {})[case] = {
            "noisy_mpsnr": round(float(g.noisy_mpsnr.mean()), 4),
            "corrupted_fraction": round(float(g.corrupted_fraction.mean()), 4),
            "n_images": len(g),
        }
    return out


def clean_metadata(path: str | Path = "data/clean/manifest.parquet") -> dict[str, Any]:
    return read_parquet_meta(path)
