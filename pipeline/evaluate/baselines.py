r"""Peer baselines: BM4D for cubes, BM3D for grey and RGB (oracle-informed: given the true σ).

Both are collaborative filters with no data-fidelity weight, so they sit beside the weighted
variational targets in the results table as fixed, non-learned references:

* **BM4D** (PyPI ``bm4d`` 4.2.5): Y. Mäkinen, L. Azzari, A. Foi, "Collaborative filtering of
  correlated noise: exact transform-domain variance for improved shrinkage and patch matching",
  IEEE TIP 29, 2020; Y. Mäkinen, S. Marchesini, A. Foi, "Ring artifact and Poisson noise
  attenuation via volumetric multiscale nonlocal collaborative filtering of spatially correlated
  noise", J. Synchrotron Rad. 29, 2022. A (C, H, W) cube is denoised as one volume. The package
  indexes a volume as ``z[row, column, slice]`` (a 2-D image is cast to (H, W, 1), and its
  block sizes are (rows, columns, slices)), so the cube goes in as (H, W, C) and comes back
  transposed to (C, H, W).
* **BM3D** (PyPI ``bm3d`` 4.0.3, a front end to the same C library): K. Dabov, A. Foi,
  V. Katkovnik, K. Egiazarian, "Image denoising by sparse 3-D transform-domain collaborative
  filtering", IEEE TIP 16(8), 2007, with the 2020 variances above. One band: ``bm3d.bm3d`` on the
  (H, W) image; three bands: ``bm3d.bm3d_rgb`` (block matching in the luminance of the opponent
  colour transform, as the package does for colour). Any other band count is rejected with a
  :class:`ValueError`: BM3D has no defined meaning for a cube here (band-by-band BM3D would
  ignore the spectral correlation that BM4D uses, and would be a third method); cubes use BM4D.

**Oracle-informed.** Both get the *true* mean noise σ of the image (``sigma_mean``, [0, 1]
units; the degraded file's σ map averaged), which no blind method knows; result rows mark them
``oracle_informed``. For non-i.i.d. noise a single σ is the packages' model of the noise, not the
truth; impulses, stripes and dead lines are not modelled at all.

**Pinned profile.** Both use their package's default profile ``"np"`` ("normal profile"), built
explicitly so a package default changing cannot change our numbers: :class:`bm4d.BM4DProfile`
(4×4×4 hard-thresholding blocks, 5×5×5 Wiener blocks) for cubes of ≥ 5 bands and
:class:`bm4d.BM4DProfile2D` (8×8×1 blocks) below, which is exactly what ``"np"`` selects by
band count, and :class:`bm3d.BM3DProfile` for BM3D, each with ``num_threads = 1`` instead of the
packages' automatic thread count: their documentation warns that more than one thread changes
the result slightly from run to run (order of the aggregation sums), and one thread makes times
comparable with the one-thread variational solves.

**Measured time** (BM4D, one thread, smooth synthetic cubes of ``tests/test_baselines.py`` plus
Gaussian noise σ = 30/255; this 2-core machine while other jobs ran, load ≈ 3):

.. code-block:: text

    $ PYTHONPATH=tests .venv/bin/python -c "
    import time
    from test_baselines import smooth_cube, noisy_of
    from pipeline.evaluate.baselines import denoise_baseline
    from pipeline.evaluate.metrics import mpsnr
    denoise_baseline('bm4d', noisy_of(smooth_cube(31, 8)), 30 / 255)  # imports
    for n in (32, 64):
        x = smooth_cube(31, n); y = noisy_of(x); c = time.process_time(); t = time.perf_counter()
        z = denoise_baseline('bm4d', y, 30 / 255)
        print(f'31x{n}x{n}: {time.process_time() - c:.1f} s CPU, {time.perf_counter() - t:.1f} s '
              f'wall, MPSNR {mpsnr(x, y):.2f} -> {mpsnr(x, z):.2f} dB')
    "
    31x32x32: 7.1 s CPU, 9.9 s wall, MPSNR 18.67 -> 35.72 dB
    31x64x64: 19.9 s CPU, 26.2 s wall, MPSNR 18.60 -> 37.36 dB

Other runs (imports excluded): 31×32×32 took 7.0–10 s of wall time (7.1–7.2 s of CPU),
31×64×64 25–51 s of wall time (20–29 s of CPU: the CPU time of a shared core varies with its
neighbours). That is ≈ 0.2 ms of CPU per voxel at that load, linear in the pixel count, split
evenly between the hard-thresholding and the Wiener pass of the C library (profiled). BM3D takes
1.0 s of CPU on a 64×64 grey image and 2.0 s on a 32×32 RGB one (mostly fixed cost: 16×16 RGB
also takes 2 s).

**On the default data, and the package's faster profiles** (``benchmarks/bm4d_profile.py``: the
25 test cubes of the denoising cases, 31×32×32, the true mean σ, one thread, profiles interleaved
per cube; this 2-core machine, load 1.5 at the start and 4 at the end; the ``np`` MPSNRs equal
the ``bm4d`` rows of ``reports/results.parquet`` exactly). ``lc`` is the package's low-complexity
``bm4d.profiles.BM4DProfileLC`` (±4 search window, Wiener stacks of 16), ``8x8`` its
``BM4DProfile2D`` (8×8×1 blocks); ``d_mpsnr``: mean paired difference to ``np`` with its 95 %
t-interval over the 5 images, ``speed_cpu``: ``np``'s CPU seconds over the profile's; the
per-cube lines and the ``speed_wall`` column are left out, the verdicts wrapped:

.. code-block:: text

    $ .venv/bin/python benchmarks/bm4d_profile.py
        case profile  images   cpu_s  wall_s  mpsnr  d_mpsnr  ci_lo  ci_hi  d_worst  speed_cpu
    deadline      np       5  18.658  19.165 26.123    0.000  0.000  0.000    0.000      1.000
    deadline      lc       5  13.342  13.565 26.023   -0.100 -0.269  0.068   -0.308      1.398
    deadline     8x8       5  26.511  27.149 24.012   -2.111 -2.488 -1.733   -2.505      0.704
     impulse      np       5  18.088  20.771 20.393    0.000  0.000  0.000    0.000      1.000
     impulse      lc       5  12.401  13.404 20.096   -0.297 -0.440 -0.155   -0.461      1.459
     impulse     8x8       5  26.112  27.043 20.809    0.416 -0.834  1.666   -0.572      0.693
     mixture      np       5  19.817  26.135 18.954    0.000  0.000  0.000    0.000      1.000
     mixture      lc       5  13.265  15.018 18.617   -0.337 -0.674  0.000   -0.798      1.494
     mixture     8x8       5  28.401  36.552 19.200    0.246 -1.023  1.514   -1.148      0.698
      noniid      np       5  18.935  25.688 27.225    0.000  0.000  0.000    0.000      1.000
      noniid      lc       5  13.323  17.260 27.088   -0.137 -0.252 -0.023   -0.260      1.421
      noniid     8x8       5  24.474  31.242 24.988   -2.237 -2.785 -1.690   -2.899      0.774
      stripe      np       5  17.058  18.151 26.755    0.000  0.000  0.000    0.000      1.000
      stripe      lc       5  12.231  12.766 26.681   -0.074 -0.230  0.083   -0.181      1.395
      stripe     8x8       5  24.123  25.400 24.773   -1.982 -2.675 -1.289   -2.507      0.707
         all      np       5  92.557 109.910 23.890    0.000  0.000  0.000    0.000      1.000
         all      lc       5  64.563  72.012 23.701   -0.189 -0.324 -0.054   -0.353      1.434
         all     8x8       5 129.623 147.385 22.756   -1.134 -1.826 -0.441   -1.624      0.714
    lc: mean over the cases -0.189 dB, worst case mixture -0.337 dB → fails (≥ -0.1 dB mean,
    ≥ -0.2 dB per case)
    8x8: mean over the cases -1.134 dB, worst case noniid -2.237 dB → fails (≥ -0.1 dB mean,
    ≥ -0.2 dB per case)

So ``np`` costs ≈ 3.7 s of CPU a cube (≈ 0.12 ms a voxel) and the default evaluation (4
denoising cases × 5 test cubes; ``noniid`` only when ``evaluate.cases`` is null) ≈ 74 CPU-s of
BM4D. ``lc`` would save ≈ 30 % of that (≈ 22 CPU-s) for 0.19 dB on average and 0.30–0.34 dB on
impulse and mixture (impulse's interval lies below -0.15 dB, mixture's reaches 0); ``8x8`` is
slower and up to 2.2 dB worse. Neither is offered: a peer baseline weakened by a third of a dB on
the cases where it is compared is not worth 22 CPU-s.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BASELINES", "bm3d_profile", "bm4d_profile", "denoise_baseline"]

BASELINES = ("bm4d", "bm3d")
PROFILE = "np"  # the packages' default profile name, pinned below
NUM_THREADS = 1

# Smallest spatial size each profile's blocks fit in (bm4d checks this with a vaguer message).
_BM4D_MIN_BANDS_3D = 5  # "np" uses 3-D blocks only when the third axis holds a 5-voxel block
_MIN_SIZE_3D = 5  # the 5×5×5 Wiener block
_MIN_SIZE_2D = 8  # the 8×8 blocks of BM3D and of BM4D's 2-D profile


def bm4d_profile(bands: int):
    """BM4D's ``"np"`` profile for a cube of ``bands`` bands (3-D blocks from 5 bands on, as the
    package selects), single-threaded."""
    import bm4d

    profile = bm4d.BM4DProfile() if bands >= _BM4D_MIN_BANDS_3D else bm4d.BM4DProfile2D()
    profile.num_threads = NUM_THREADS
    return profile


def bm3d_profile():
    """BM3D's ``"np"`` profile, single-threaded."""
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = NUM_THREADS
    return profile


def denoise_baseline(name: str, noisy: np.ndarray, sigma_mean: float) -> np.ndarray:
    """Denoise ``noisy`` (C, H, W) with baseline ``name`` given the true mean noise σ.

    ``sigma_mean`` is in the [0, 1] units of the image (σ_255 / 255): these baselines are
    oracle-informed (module docstring). Returns float32 (C, H, W). ``"bm4d"``: any band count
    (a volume); ``"bm3d"``: 1 (grey) or 3 (RGB) bands only. A bad name, array or σ raises a
    :class:`ValueError` naming the value.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    cube = _check_cube(noisy, name)
    sigma = _check_sigma(sigma_mean)
    c, h, w = cube.shape
    if name == "bm4d":
        import bm4d

        need = _MIN_SIZE_3D if c >= _BM4D_MIN_BANDS_3D else _MIN_SIZE_2D
        _check_size(cube.shape, need, name)
        # (C, H, W) → the package's (rows, columns, slices) = (H, W, C), and back.
        out = bm4d.bm4d(cube.transpose(1, 2, 0), sigma, profile=bm4d_profile(c))
        out = np.asarray(out).transpose(2, 0, 1)
    else:
        import bm3d

        _check_size(cube.shape, _MIN_SIZE_2D, name)
        if c == 1:
            out = np.asarray(bm3d.bm3d(cube[0], sigma, profile=bm3d_profile()))[None]
        elif c == 3:
            rgb = bm3d.bm3d_rgb(cube.transpose(1, 2, 0), sigma, profile=bm3d_profile())
            out = np.asarray(rgb).transpose(2, 0, 1)
        else:
            raise ValueError(
                f"bm3d takes a grey (1 band) or RGB (3 bands) image, got {c} bands "
                f"(shape {cube.shape}): use bm4d for cubes"
            )
    out = np.ascontiguousarray(out, dtype=np.float32)
    if out.shape != (c, h, w) or not np.isfinite(out).all():
        # e.g. bm3d_rgb divides by each opponent channel's range: a constant channel gives NaN.
        raise RuntimeError(f"{name} returned shape {out.shape} or non-finite values")
    return out


def _check_cube(noisy: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(noisy)
    if a.ndim != 3:
        raise ValueError(f"{name}: noisy must be a (C, H, W) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name}: noisy must be a float array in [0, 1] units, got {a.dtype}")
    bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{name}: noisy holds {bad} NaN or infinite values (shape {a.shape})")
    # float64 copies: the packages' own dtype, and they must never write into the caller's array.
    return np.array(a, dtype=np.float64)


def _check_sigma(sigma_mean: float) -> float:
    try:
        s = float(sigma_mean)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_mean must be a number, got {sigma_mean!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"sigma_mean must be a finite σ > 0, got {sigma_mean!r}")
    if s > 1:
        raise ValueError(
            f"sigma_mean = {sigma_mean!r} is above 1: σ is in [0, 1] units (σ_255 / 255)"
        )
    return s


def _check_size(shape: tuple[int, ...], need: int, name: str) -> None:
    if min(shape[1:]) < need:
        raise ValueError(
            f"{name}: image of shape {shape} is smaller than its {need}×{need} blocks "
            f"(height and width must be ≥ {need})"
        )
