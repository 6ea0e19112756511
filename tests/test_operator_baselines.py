"""Closed-form operator baselines: Wiener deconvolution against an independent DFT formula and
as an inverse of the circular blur, the normalised adjoint on constants and ramps, normalised
convolution on masks, their gains over the observation, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cubes import smooth_cube
from scipy import ndimage

from pipeline.degrade.operators import (
    Blur,
    Downsampling,
    Identity,
    Inpainting,
    gaussian_kernel,
    random_mask,
)
from pipeline.evaluate.metrics import mpsnr
from pipeline.evaluate.operator_baselines import (
    OPERATOR_BASELINES,
    fill,
    operator_baseline,
    upsample,
    wiener,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Asymmetric 3×5 kernel (catches a flipped or mis-rolled OTF); the centre weight 0.6 exceeds
# the sum 0.4 of the others, so |k̂| ≥ 0.2 everywhere: no OTF zeros.
ASYM = np.array(
    [
        [0.00, 0.05, 0.02, 0.00, 0.01],
        [0.10, 0.04, 0.60, 0.08, 0.00],
        [0.00, 0.03, 0.00, 0.05, 0.02],
    ]
)


def apply(op, x: np.ndarray) -> np.ndarray:
    """The operator applied to a numpy cube, float32."""
    with torch.no_grad():
        return op.A(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy().astype(np.float32)


def otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full 2-D OTF of a kernel centred at (h // 2, w // 2), built from scratch."""
    h, w = kernel.shape
    psf = np.zeros(shape)
    psf[:h, :w] = kernel
    return np.fft.fft2(np.roll(psf, (-(h // 2), -(w // 2)), axis=(0, 1)))


def wiener_reference(y, kernel, band_sigma, gain):
    """Wiener filter of the module docstring, per band with fft2/ifft2 (float64)."""
    y = np.asarray(y, dtype=np.float64) / gain
    khat = otf(kernel, y.shape[-2:])
    out = np.empty_like(y)
    for b, (yb, sb) in enumerate(zip(y, band_sigma, strict=True)):
        mu = yb.mean() / kernel.sum()
        signal = max(yb.var() - sb**2, 1e-3 * yb.var() + 1e-12)
        spectrum = np.conj(khat) * np.fft.fft2(yb - mu * kernel.sum())
        out[b] = mu + np.fft.ifft2(spectrum / (np.abs(khat) ** 2 + sb**2 / signal)).real
    return out


@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("kernel", ["asym", "gaussian", "scaled"])
@pytest.mark.parametrize("sigma_form", ["scalar", "bands", "map"])
def test_wiener_matches_closed_form(padding, kernel, sigma_form):
    rng = np.random.default_rng(3)
    k = {"asym": ASYM, "gaussian": gaussian_kernel(1.0).numpy(), "scaled": 2 * ASYM}[kernel]
    op = Blur(torch.from_numpy(k), padding)
    shape = (3, 16, 20)  # H ≠ W: a transposed axis cannot pass
    levels = {
        "scalar": np.float64(0.03),
        "bands": np.array([0.01, 0.03, 0.05]),
        "map": 0.01 + 0.05 * rng.random(shape),
    }[sigma_form]
    sig_map = np.broadcast_to(
        levels if sigma_form == "map" else np.reshape(levels, (-1, 1, 1)), shape
    )
    y = (apply(op, rng.random(shape)) + sig_map * rng.standard_normal(shape)).astype(np.float32)
    # Zero boundary: the data and the noise are divided by the gain A1 / Σk = k ∗ 1 / Σk (zero
    # outside; above the 0.1 floor for these kernels).
    gain = (
        ndimage.convolve(np.ones(shape[1:]), k / k.sum(), mode="constant")
        if padding == "zero"
        else np.ones(shape[1:])
    )
    band_sigma = np.sqrt(np.mean((sig_map / gain) ** 2, axis=(1, 2)))
    expected = wiener_reference(y, k, band_sigma, gain)
    got = wiener(y, op, levels)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernel", ["asym", "gaussian", "scaled"])
def test_wiener_inverts_circular_blur(kernel):
    """σ → 0: the filter is A⁻¹. Measured RMS 1.1e-7 (Gaussian σ = 0.7, min |k̂| = 0.032) and
    3.0e-8 (asymmetric, min |k̂| = 0.41; its double, of sum 2, checks the mean term)."""
    rng = np.random.default_rng(0)
    k = {"asym": ASYM, "gaussian": gaussian_kernel(0.7).numpy(), "scaled": 2 * ASYM}[kernel]
    op = Blur(torch.from_numpy(k), "circular")
    x = rng.random((4, 16, 16)).astype(np.float32)
    y = apply(op, x)
    for sigma in (1e-9, 0.0):
        rms = np.sqrt(np.mean((wiener(y, op, sigma) - x) ** 2))
        assert rms <= 1e-3, (sigma, rms)


@pytest.mark.parametrize(("padding", "margin"), [("circular", 1.0), ("zero", 5.0)])
def test_wiener_improves_on_observation(padding, margin):
    """Gaussian blur σ = 1.5, noise 0.02 on a smooth 31×32×32 cube. Measured (seeds 0–2):
    circular 31.0 → 32.8–32.9 dB (+1.8), zero 21.8 → 31.6–31.7 dB (+9.8). Returning ``y``
    gains 0 dB and fails."""
    rng = np.random.default_rng(0)
    x = smooth_cube(31, 32)
    op = Blur(gaussian_kernel(1.5), padding)
    y = (apply(op, x) + 0.02 * rng.standard_normal(x.shape)).astype(np.float32)
    gain = mpsnr(x, wiener(y, op, 0.02)) - mpsnr(x, y)
    assert gain >= margin, gain


FILTERS = ["gaussian", "box", None]


@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("filt", FILTERS)
@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_upsample_reproduces_constant_exactly(factor, filt, padding):
    op = Downsampling(factor, filt, padding)
    x = np.full((2, 24, 24), 0.3, dtype=np.float32)
    got = upsample(apply(op, x), op)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize(
    ("factor", "filt", "tol_px"),
    # Tolerance in pixels of the slope: f = 2 is exact (linear interpolation, or Gaussian weights
    # symmetric about every pixel); the Gaussian at f = 3, 4 is a kernel regression whose
    # weighted centroid drifts by ≤ 0.06 / 0.10 px (measured), bounded here by 0.12.
    [
        (2, "gaussian", 1e-4),
        (2, "box", 1e-4),
        (2, None, 1e-4),
        (3, "gaussian", 0.12),
        (4, "gaussian", 0.12),
        (3, None, 0.12),
    ],
)
def test_upsample_linear_ramp_interior(factor, filt, tol_px):
    size = 72
    i, j = np.mgrid[0:size, 0:size]
    slope = 0.4 / size
    x = (0.1 + slope * i + slope * j)[None].astype(np.float32)
    op = Downsampling(factor, filt, "zero")
    got = upsample(apply(op, x), op)
    err = np.abs(got - x)[:, 12:-12, 12:-12].max()
    # The drift adds up over the two axes, each of slope `slope`.
    assert err <= 2 * tol_px * slope + 1e-6, err / (2 * slope)


@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("filt", FILTERS)
def test_upsample_beats_nearest_and_bicubic(filt, padding):
    """×2 on a smooth 31×32×32 cube. Measured MPSNR (dB), ours / nearest / torch bicubic:
    gaussian circular 35.1 / 33.2 / 34.5, zero 39.6 / 23.9 / 24.3; box circular 36.8 / 33.5 /
    35.0, zero 41.8 / 25.5 / 26.0; none circular 36.3 / 33.3 / 34.9, zero 41.7 / 33.3 / 34.9.
    Bicubic's half-pixel shift (block centres) and the zero boundary's dark border cost it."""
    x = smooth_cube(31, 32)
    op = Downsampling(2, filt, padding)
    y = apply(op, x)
    ours = mpsnr(x, upsample(y, op))
    nearest = mpsnr(x, np.repeat(np.repeat(y, 2, axis=1), 2, axis=2))
    bicubic = torch.nn.functional.interpolate(
        torch.from_numpy(y)[None], scale_factor=2, mode="bicubic", align_corners=False
    )[0].numpy()
    assert ours >= nearest + 1.5, (ours, nearest)
    assert ours >= mpsnr(x, bicubic) + 0.3, (ours, mpsnr(x, bicubic))


def masks(shape, rng):
    """Half the entries; half the spectra (one (1, H, W) mask for all bands); half the entries
    with band 2 missing altogether."""
    band = random_mask(shape, 0.5, rng).clone()
    band[2] = 0
    return {
        "entries": random_mask(shape, 0.5, rng),
        "spectra": random_mask((1, *shape[1:]), 0.5, rng),
        "band": band,
    }


@pytest.mark.parametrize("kind", ["entries", "spectra", "band"])
def test_fill_keeps_observed_and_constants_exactly(kind):
    rng = np.random.default_rng(1)
    x = smooth_cube(8, 24, seed=2)
    op = Inpainting(masks(x.shape, rng)[kind])
    m = np.broadcast_to(op.mask.numpy() != 0, x.shape)
    got = fill(apply(op, x), op)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_array_equal(got[m], x[m])
    const = np.full(x.shape, 0.7, dtype=np.float32)
    np.testing.assert_array_equal(fill(apply(op, const), op), const)


@pytest.mark.parametrize(("kind", "margin"), [("entries", 25.0), ("spectra", 25.0)])
def test_fill_improves_on_observation(kind, margin):
    """Half the entries or half the spectra missing on a smooth 31×32×32 cube. Measured:
    8.7 → 43.0 dB (entries), 8.7 → 42.6 dB (spectra); the zeros of ``y`` fail any margin."""
    rng = np.random.default_rng(0)
    x = smooth_cube(31, 32)
    op = Inpainting(masks(x.shape, rng)[kind])
    y = apply(op, x)
    got = fill(y, op)
    assert mpsnr(x, got) - mpsnr(x, y) >= margin, (mpsnr(x, y), mpsnr(x, got))


def test_fill_whole_band_from_neighbouring_bands():
    """Band 2 missing, bands 1 and 3 fully observed: band 2 is their mean, pixel by pixel;
    a missing first band copies the nearest observed band."""
    x = smooth_cube(6, 16, seed=4)
    mask = np.ones(x.shape)
    mask[[0, 2]] = 0
    op = Inpainting(torch.from_numpy(mask))
    got = fill(apply(op, x), op)
    np.testing.assert_allclose(got[2], (x[1] + x[3]) / 2, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(got[0], x[1])


def test_dispatcher_and_registry():
    rng = np.random.default_rng(0)
    x = smooth_cube(4, 16)
    blur, down = Blur(gaussian_kernel(1.0)), Downsampling(2)
    inpaint = Inpainting(random_mask(x.shape, 0.3, rng))
    expected = {"wiener": (Blur,), "upsample": (Downsampling,), "fill": (Inpainting,)}
    assert expected == OPERATOR_BASELINES
    y = apply(blur, x)
    np.testing.assert_array_equal(operator_baseline("wiener", y, blur, 0.01), wiener(y, blur, 0.01))
    y = apply(down, x)
    np.testing.assert_array_equal(operator_baseline("upsample", y, down), upsample(y, down))
    y = apply(inpaint, x)
    np.testing.assert_array_equal(operator_baseline("fill", y, inpaint), fill(y, inpaint))


def test_errors():
    x = smooth_cube(3, 16)
    blur, down, inpaint = Blur(gaussian_kernel(1.0)), Downsampling(2), Inpainting(torch.ones(1))
    with pytest.raises(ValueError, match=r"wiener.*Inpainting"):
        wiener(x, inpaint, 0.1)
    with pytest.raises(ValueError, match=r"upsample.*Blur"):
        upsample(x, blur)
    with pytest.raises(ValueError, match=r"fill.*Downsampling"):
        fill(x, down)
    with pytest.raises(ValueError, match=r"wiener.*Identity"):
        operator_baseline("wiener", x, Identity(), 0.1)
    with pytest.raises(ValueError, match="unknown operator baseline"):
        operator_baseline("bicubic", x, down)
    with pytest.raises(ValueError, match="sigma"):
        operator_baseline("wiener", x, blur)
    bad = x.copy()
    bad[1, 2, 3] = np.nan
    for name, op in (("wiener", blur), ("upsample", down), ("fill", inpaint)):
        with pytest.raises(ValueError, match=rf"{name}: y contains NaN"):
            operator_baseline(name, bad, op, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        wiener(x, blur, np.nan)
    with pytest.raises(ValueError, match="sigma"):
        wiener(x, blur, np.ones(5))
    with pytest.raises(ValueError, match="observes no pixel"):
        fill(x, Inpainting(torch.zeros(1)))
