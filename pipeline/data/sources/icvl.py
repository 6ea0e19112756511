"""ICVL hyperspectral images (Arad & Ben-Shahar, ECCV 2016): 1392 × 1300 pixels (some smaller),
31 bands 400–700 nm, one MATLAB file per scene with the radiance cube in the array ``rad``::

    <root>/<scene>.mat        (MATLAB v7.3 = HDF5; v5 files are read with SciPy)

MATLAB stores ``rad`` as (H, W, C) in column-major order, so HDF5 readers see (C, W, H).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.sources.base import RawImage, safe_stem, to_float
from pipeline.io import array_sha256


def read_rad(path: Path) -> np.ndarray:
    """The ``rad`` array of one ICVL file as (C, H, W)."""
    import h5py

    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "rad" not in f:
                    raise ValueError(f"{path}: no array 'rad' (has {sorted(f.keys())})")
                raw = np.asarray(f["rad"])
            if raw.ndim != 3:
                raise ValueError(f"{path}: 'rad' must be 3-D, got shape {raw.shape}")
            return raw.transpose(0, 2, 1)
        import scipy.io

        mat = scipy.io.loadmat(path)
        if "rad" not in mat:
            keys = sorted(k for k in mat if not k.startswith("__"))
            raise ValueError(f"{path}: no array 'rad' (has {keys})")
        raw = np.asarray(mat["rad"])
        if raw.ndim != 3:
            raise ValueError(f"{path}: 'rad' must be 3-D, got shape {raw.shape}")
        return raw.transpose(2, 0, 1)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from None


def load_icvl(
    root: str | None, names: list[str] | None, bands: int, layout: str | None = None
) -> Iterator[RawImage]:
    base = Path(root or ".")
    if not base.is_dir():
        raise ValueError(f"prepare.path = {root!r}: not a folder")
    files = sorted(p for p in base.rglob("*.mat") if p.is_file())
    if not files:
        raise ValueError(f"prepare.path = {root!r}: no .mat files found")
    found = set()
    for path in files:
        name = safe_stem(path.relative_to(base))
        found.add(name)
        if names is not None and name not in names:
            continue
        cube = read_rad(path)
        if cube.shape[0] != bands:
            raise ValueError(
                f"{path}: 'rad' has {cube.shape[0]} bands (shape {cube.shape}), "
                f"but prepare.bands = {bands}"
            )
        yield RawImage(
            name, to_float(cube, str(path)), str(path.relative_to(base)), array_sha256(cube)
        )
    if names is not None and (missing := sorted(set(names) - found)):
        raise ValueError(f"prepare.images: {missing} not found under {root!r}")
