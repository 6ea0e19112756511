r"""Apply a weighting and a target model to one image file of your own.

The library behind ``python -m stages.apply``: read an image or cube (:func:`read_image`), compute
its weight map (``unweighted`` or ``handcrafted``,
:func:`pipeline.evaluate.weightings.compute_weights`, or the weighting of a learned method from
one of its checkpoints, e.g. ``dlw`` with
``models/dlw/<set>/best.pt``), solve the weighted model (Rui et al., arXiv 2301.06081, eq. (2.1);
docs/science.md)

.. math:: \hat x = \operatorname*{argmin}_x\ \tfrac12 \sum_i w_i (y_i - x_i)^2 + m\,R(x)

to convergence (``solve(y, w, converge=True)``), where :math:`m` is a multiplier of the model's
reference regularisation strength (:func:`scaled_params`), and write the restored image, the
weights and PNG previews (:func:`write_outputs`). No weighting here needs the truth (the
oracle weighting needs the σ map and the mask of a degraded file, which a user's image has not).
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import save_npy, write_bytes, write_json
from pipeline.methods.registry import get_method, providing
from pipeline.models.strength import scaled_params

__all__ = [
    "FALSE_COLOUR",
    "IMAGE_SUFFIXES",
    "OUTPUT_FILES",
    "WEIGHTINGS",
    "Restored",
    "normalise",
    "preview",
    "preview_bands",
    "read_image",
    "restore",
    "scaled_params",
    "weight_scale",
    "write_outputs",
    "write_png",
]

# The weightings that need no truth, and those of the registered learned methods (a checkpoint).
BLIND = ("unweighted", "handcrafted")
WEIGHTINGS = (*BLIND, *providing("weighting"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

# -- reading ---------------------------------------------------------------------------------


def read_image(
    path: str | os.PathLike, key: str | None = None, layout: str | None = None
) -> np.ndarray:
    """One file → float32 (C, H, W); a :class:`ValueError` naming the file if it cannot be used.

    * ``.npy``: a cube in the axis order ``layout`` declares ("chw" or "hwc"); unset, the band
      axis is the first or last, whichever is strictly the shortest, and a file where that
      does not decide is refused (:func:`pipeline.data.sources.base.array_to_chw`); (H, W) is
      one band;
    * ``.png``, ``.jpg``, ``.tif`` (via :func:`skimage.io.imread`): grey or RGB, alpha dropped,
      bands first;
    * ``.mat`` (``key`` = the array's name; optional when the file holds exactly one array):
      MATLAB's (H, W, C) order, as CAVE and ICVL store cubes. v5 files via
      :func:`scipy.io.loadmat`; v7.3 (HDF5) files via h5py, which sees the column-major array
      transposed, (C, W, H).

    uint8/uint16 pixels are scaled by their type's range (/ 255, / 65535), other integer types
    by their own maximum (negative integers are refused); floats are taken as they are (the
    models assume data range 1: see :func:`normalise`). NaN or infinite values are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if key is not None and suffix != ".mat":
        raise ValueError(f"--key {key!r}: only .mat files hold named arrays, not {path}")
    if layout is not None and suffix != ".npy":
        raise ValueError(f"--layout {layout!r}: only .npy cubes need one, not {path}")
    if suffix == ".npy":
        from pipeline.data.sources.base import array_to_chw

        raw = array_to_chw(_read_npy(path), str(path), layout, hint="--layout")
    elif suffix in IMAGE_SUFFIXES:
        raw = _read_picture(path)
    elif suffix == ".mat":
        raw = _read_mat(path, key)
    else:
        raise ValueError(
            f"{path}: unsupported file type {suffix!r} (use .npy, .mat, "
            f"{', '.join(IMAGE_SUFFIXES)})"
        )
    return _to_unit_float(raw, path)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated header, pickled object array, ...
        raise ValueError(
            f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None


def _read_picture(path: Path) -> np.ndarray:
    import skimage.io

    try:
        raw = np.asarray(skimage.io.imread(path))
    except Exception as exc:  # any decoder failure is reported the same way
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if raw.ndim == 2:
        return raw[None]
    if raw.ndim == 3 and raw.shape[-1] in (2, 3, 4):
        # grey + alpha → grey; RGBA → RGB: the alpha channel is not an image band.
        keep = 1 if raw.shape[-1] == 2 else 3
        return np.moveaxis(raw[..., :keep], -1, 0)
    raise ValueError(
        f"{path}: expected a grey or RGB image, got shape {raw.shape} (save cubes as a "
        "(C, H, W) .npy or a .mat file)"
    )


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    import h5py

    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3
            with h5py.File(path, "r") as f:
                names = sorted(k for k in f if isinstance(f[k], h5py.Dataset))
                name = _pick_key(path, key, names)
                raw = np.asarray(f[name])
            return _mat_to_chw(raw, path, name, reverse=True)
        import scipy.io

        mat = scipy.io.loadmat(path)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from None
    names = sorted(
        k for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray)
    )
    name = _pick_key(path, key, names)
    return _mat_to_chw(np.asarray(mat[name]), path, name, reverse=False)


def _pick_key(path: Path, key: str | None, names: list[str]) -> str:
    if key is None:
        if len(names) == 1:
            return names[0]
        raise ValueError(f"{path}: holds arrays {names}: choose one with --key")
    if key not in names:
        raise ValueError(f"{path}: no array {key!r} (has {names})")
    return key


def _mat_to_chw(raw: np.ndarray, path: Path, name: str, *, reverse: bool) -> np.ndarray:
    if raw.ndim not in (2, 3):
        raise ValueError(f"{path}: array {name!r} must be 2-D or 3-D, got shape {raw.shape}")
    if reverse:  # HDF5 sees MATLAB's (H, W[, C]) as (W, H) or (C, W, H)
        return raw.T[None] if raw.ndim == 2 else raw.transpose(0, 2, 1)
    return raw[None] if raw.ndim == 2 else raw.transpose(2, 0, 1)


def _to_unit_float(raw: np.ndarray, path: Path) -> np.ndarray:
    from pipeline.data.sources.base import to_float

    a = np.asarray(raw)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: unsupported pixel type {a.dtype}")
    if a.size and a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{path}: holds {bad} NaN or infinite values (shape {a.shape})")
    # the same integer rules as prepare: uint8/uint16 by their type's range, others by their max
    out = to_float(a, str(path)).astype(np.float32) if a.size else a.astype(np.float32)
    if out.ndim != 3 or min(out.shape) < 1:
        raise ValueError(f"{path}: expected a (C, H, W) image, got shape {out.shape}")
    if min(out.shape[1:]) < 2:
        raise ValueError(f"{path}: image of shape {out.shape} is too small (H, W ≥ 2)")
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise ValueError(f"{path}: holds {bad} NaN or infinite values (shape {out.shape})")
    return np.ascontiguousarray(out)


def normalise(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min-max to [0, 1] over the whole image (the test protocol's per-crop normalisation):
    ``(image − lo) / (hi − lo)`` as float32, with ``lo``, ``hi``. For float data in another
    range (e.g. ICVL radiance): every model's strengths assume data range 1."""
    lo, hi = float(image.min()), float(image.max())
    if not hi > lo:
        raise ValueError(f"cannot normalise a constant image (every value is {lo})")
    return ((image.astype(np.float64) - lo) / (hi - lo)).astype(np.float32), lo, hi


# -- restoring -------------------------------------------------------------------------------


@dataclass
class Restored:
    """What :func:`restore` returns."""

    restored: np.ndarray  # float32 (C, H, W)
    weights: np.ndarray  # float32 (C, H, W)
    iterations: int
    converged: bool
    primal_residual: float
    dual_residual: float
    weights_time_s: float
    solve_time_s: float
    params: dict[str, Any]  # the model's full parameters


def restore(
    noisy: np.ndarray,
    *,
    weighting: str,
    target: str = "tv",
    strength: float = 1.0,
    net: Any = None,
) -> Restored:
    """Weights of ``noisy`` (C, H, W) by ``weighting``, then the converged weighted ``target``
    with its strength × ``strength`` (:func:`scaled_params`). ``net``: for the weighting of a
    learned method, its trained part (``Method.load(checkpoint)``)."""
    import torch

    from pipeline.evaluate.weightings import check_map, compute_weights
    from pipeline.models import build_model

    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r} (here: {', '.join(WEIGHTINGS)})")
    learned = weighting not in BLIND
    if learned != (net is not None):
        raise ValueError(
            f"the {weighting} weighting "
            + ("needs its trained part (a checkpoint)" if learned else "takes no checkpoint")
        )
    model = build_model(target, **scaled_params(target, strength))
    t0 = time.perf_counter()
    if learned:
        w = get_method(weighting).weights(net, np.asarray(noisy, dtype=np.float64))
    else:
        w = compute_weights(weighting, noisy)
    w = np.asarray(w, dtype=np.float32)
    if w.shape == noisy.shape:
        w = check_map(w, noisy.shape, weighting)
    t1 = time.perf_counter()
    if w.shape != noisy.shape:
        raise ValueError(f"weights of shape {w.shape} for an image of shape {noisy.shape}")
    with torch.no_grad():
        y = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None]
        sol = model.solve(y, torch.from_numpy(w)[None], converge=True)
    t2 = time.perf_counter()
    return Restored(
        restored=sol.x[0].numpy().astype(np.float32),
        weights=w,
        iterations=int(sol.iterations),
        converged=bool(sol.converged[0]),
        primal_residual=float(sol.primal_residual[0]),
        dual_residual=float(sol.dual_residual[0]),
        weights_time_s=t1 - t0,
        solve_time_s=t2 - t1,
        params=_params_dict(model.params),
    )


def _params_dict(params: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)


# -- writing ---------------------------------------------------------------------------------

# Bands shown as R, G, B for a cube: fractions of the band axis. On 31 bands over 400–700 nm
# these are bands 24, 15, 5, i.e. 640, 550, 450 nm: a natural-looking false colour.
FALSE_COLOUR = (0.8, 0.5, 0.15)


def preview_bands(bands: int) -> list[int]:
    """The bands a preview shows: [0] for grey, [0, 1, 2] for RGB, three spread ones otherwise."""
    if bands == 1:
        return [0]
    if bands == 3:
        return [0, 1, 2]
    return [min(bands - 1, math.floor(f * (bands - 1) + 0.5)) for f in FALSE_COLOUR]


def preview(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """uint8 (H, W) grey or (H, W, 3) false colour of ``image`` (C, H, W): ``image / scale``
    clipped to [0, 1] (images: data range 1, so noisy and restored compare)."""
    shown = np.asarray(image, dtype=np.float64)[preview_bands(image.shape[0])] / scale
    out = np.round(255 * np.clip(shown, 0, 1)).astype(np.uint8)
    return out[0] if out.shape[0] == 1 else np.moveaxis(out, 0, -1)


def weight_scale(weights: np.ndarray) -> float:
    """Display scale of a weight map: the 99th percentile of the shown bands, so that a few large
    weights do not darken the rest (the maps have mean 1 and long upper tails)."""
    shown = weights[preview_bands(weights.shape[0])]
    q = float(np.percentile(shown, 99))
    return q if q > 0 else 1.0


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Encode in memory, then write atomically (:func:`pipeline.io.write_bytes`)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


OUTPUT_FILES = ("restored.npy", "weights.npy", "noisy.png", "restored.png", "weights.png")


def write_outputs(
    outdir: str | os.PathLike, noisy: np.ndarray, result: Restored, summary: dict[str, Any]
) -> dict[str, Path]:
    """Write ``OUTPUT_FILES`` and ``summary.json`` into ``outdir``, each atomically.

    The names are fixed: nothing derived from the input's name reaches a path, so no file name
    can escape ``outdir``. ``summary.json`` is written last: its presence means the rest is there.
    """
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (*OUTPUT_FILES, "summary.json")}
    save_npy(paths["restored.npy"], result.restored)
    save_npy(paths["weights.npy"], result.weights)
    write_png(paths["noisy.png"], preview(noisy))
    write_png(paths["restored.png"], preview(result.restored))
    write_png(paths["weights.png"], preview(result.weights, weight_scale(result.weights)))
    write_json(paths["summary.json"], summary)
    return paths
