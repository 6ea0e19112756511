"""Tests for pipeline.degrade.operators (in the style of deepinv's tests/test_physics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from pipeline.degrade.operators import (
    OPERATORS,
    Blur,
    Downsampling,
    Identity,
    Inpainting,
    LinearOperator,
    _splat,
    box_kernel,
    gaussian_kernel,
    motion_kernel,
    random_mask,
)

SHAPE = (2, 3, 24, 24)

OPERATOR_NAMES = [
    "identity",
    "blur_gaussian_circular",
    "blur_gaussian_zero",
    "blur_motion_circular",
    "blur_motion_zero",
    "blur_rect_circular",
    "blur_rect_zero",
    "inpainting",
    "downsampling_x2_gaussian_circular",
    "downsampling_x2_box_zero",
    "downsampling_x3_box_zero",
    "downsampling_x3_gaussian_zero",
    "downsampling_x4_none_circular",
]

BLUR_NAMES = [n for n in OPERATOR_NAMES if n.startswith("blur")]


def rect_kernel() -> torch.Tensor:
    """Asymmetric, non-square kernel: catches flipped or transposed kernels."""
    gen = torch.Generator().manual_seed(3)
    k = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    return k / k.sum()


def make_kernel(kind: str) -> torch.Tensor:
    if kind == "gaussian":
        return gaussian_kernel(1.5)
    if kind == "motion":
        return motion_kernel(9, np.random.default_rng(7))
    if kind == "rect":
        return rect_kernel()
    raise ValueError(kind)


def make_operator(name: str) -> LinearOperator:
    """Build the operator named ``<kind>[_<options>...]`` (see OPERATOR_NAMES)."""
    kind, *opts = name.split("_")
    if kind == "identity":
        return Identity()
    if kind == "blur":
        return Blur(make_kernel(opts[0]), padding=opts[1])
    if kind == "inpainting":
        return Inpainting(random_mask(SHAPE[-2:], 0.5, np.random.default_rng(1)))
    if kind == "downsampling":
        factor, filt, padding = int(opts[0][1:]), opts[1], opts[2]
        return Downsampling(factor, filter=None if filt == "none" else filt, padding=padding)
    raise ValueError(name)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def operator_norm(op: LinearOperator, shape: tuple[int, ...], n_iter: int = 50) -> float:
    """Power iteration on AᵀA: returns sqrt of its largest eigenvalue."""
    x = randn(*shape, seed=11)
    x = x / x.norm()
    for _ in range(n_iter):
        z = op.A_adjoint(op.A(x))
        x = z / z.norm()
    return math.sqrt(torch.vdot(x.flatten(), op.A_adjoint(op.A(x)).flatten()).item())


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_adjointness(name: str) -> None:
    op = make_operator(name)
    x = randn(*SHAPE, seed=0)
    ax = op.A(x)
    y = randn(*ax.shape, seed=1)
    lhs = torch.sum(ax * y)
    rhs = torch.sum(x * op.A_adjoint(y))
    assert op.A_adjoint(y).shape == x.shape
    assert abs(lhs - rhs) / abs(lhs) <= 1e-5, (lhs.item(), rhs.item())


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_linearity(name: str) -> None:
    op = make_operator(name)
    x, z = randn(*SHAPE, seed=2), randn(*SHAPE, seed=3)
    a, b = 0.7, -2.3
    torch.testing.assert_close(op.A(a * x + b * z), a * op.A(x) + b * op.A(z))


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_forward_is_A_and_float32(name: str) -> None:
    op = make_operator(name)
    x = randn(*SHAPE, seed=4)
    torch.testing.assert_close(op(x), op.A(x))
    y32 = op.A(x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32, op.A(x).float(), rtol=1e-5, atol=1e-5)


def test_registry() -> None:
    expected = {
        "identity": Identity,
        "blur": Blur,
        "inpainting": Inpainting,
        "downsampling": Downsampling,
    }
    assert expected == OPERATORS


# --- Blur -------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["circular", "zero"])
@pytest.mark.parametrize("size", [(1, 1), (5, 5), (3, 7)])
def test_blur_delta_is_identity(padding: str, size: tuple[int, int]) -> None:
    k = torch.zeros(size, dtype=torch.float64)
    k[size[0] // 2, size[1] // 2] = 1
    x = randn(*SHAPE)
    torch.testing.assert_close(Blur(k, padding).A(x), x, rtol=0, atol=1e-12)


def test_blur_is_convolution_not_correlation() -> None:
    # An off-centre delta at c + (1, 0) must shift down: (Ax)[i, j] = x[i - 1, j].
    k = torch.zeros(3, 3, dtype=torch.float64)
    k[2, 1] = 1
    x = randn(*SHAPE)
    torch.testing.assert_close(Blur(k).A(x), torch.roll(x, 1, dims=-2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "motion", "rect"])
def test_circular_blur_of_constant_is_constant(kind: str) -> None:
    x = torch.full(SHAPE, 0.37, dtype=torch.float64)
    torch.testing.assert_close(Blur(make_kernel(kind)).A(x), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", BLUR_NAMES)
def test_blur_matches_scipy(name: str) -> None:
    op = make_operator(name)
    mode = {"circular": "wrap", "zero": "constant"}[op.padding]
    x = randn(*SHAPE, seed=5)
    out = op.A(x)
    k = op.kernel.numpy()
    for b in range(SHAPE[0]):
        for c in range(SHAPE[1]):
            ref = ndimage.convolve(x[b, c].numpy(), k, mode=mode, cval=0.0)
            np.testing.assert_allclose(out[b, c].numpy(), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", BLUR_NAMES)
def test_blur_operator_norm_at_most_one(name: str) -> None:
    norm = operator_norm(make_operator(name), SHAPE[-2:])
    assert 0.5 < norm <= 1 + 1e-6


def test_circular_blur_rejects_kernel_larger_than_image() -> None:
    with pytest.raises(ValueError, match="larger than image"):
        Blur(gaussian_kernel(1.0, size=31)).A(randn(*SHAPE))


def test_unknown_padding_rejected() -> None:
    with pytest.raises(ValueError, match="'reflect'"):
        Blur(gaussian_kernel(1.0), padding="reflect")
    with pytest.raises(ValueError, match="'reflect'"):
        Downsampling(2, padding="reflect")


@pytest.mark.parametrize("shape", [(4, 4), (3, 4), (3,), (1, 3, 3)])
def test_blur_rejects_bad_kernel_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="odd sizes"):
        Blur(torch.ones(shape))


# --- kernels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_kernel(sigma: float) -> None:
    k = gaussian_kernel(sigma)
    size = 2 * math.ceil(3 * sigma) + 1
    assert k.shape == (size, size)
    assert k.sum().item() == pytest.approx(1, abs=1e-12)
    torch.testing.assert_close(k, k.T, rtol=0, atol=0)
    torch.testing.assert_close(k, k.flip(0, 1), rtol=0, atol=0)
    assert k.argmax().item() == (size * size) // 2
    assert gaussian_kernel(sigma, size=5).shape == (5, 5)
    with pytest.raises(ValueError):
        gaussian_kernel(sigma, size=4)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_box_kernel(width: int) -> None:
    k = box_kernel(width)
    assert k.shape[0] % 2 == 1
    assert k.sum().item() == pytest.approx(1, abs=1e-12)
    torch.testing.assert_close(k, k.flip(0, 1), rtol=0, atol=0)
    # Variance of the 1-D profile: centred discrete uniform (odd f) or trapezoid (even f).
    t = torch.arange(k.shape[0], dtype=torch.float64) - k.shape[0] // 2
    var = (k.sum(1) * t**2).sum().item()
    expected = (width**2 - 1) / 12 if width % 2 else (width**2 + 2) / 12
    assert var == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [9, 17, 31])
def test_motion_kernel(seed: int, size: int) -> None:
    k = motion_kernel(size, np.random.default_rng(seed))
    assert k.shape == (size, size)
    assert k.dtype == torch.float64
    assert torch.all(k >= 0)
    assert k.sum().item() == pytest.approx(1, abs=1e-12)
    assert k.max().item() < 0.5
    assert (k > 0).sum().item() > size
    torch.testing.assert_close(k, motion_kernel(size, np.random.default_rng(seed)), rtol=0, atol=0)
    assert not torch.allclose(k, motion_kernel(size, np.random.default_rng(seed + 100)))
    # The trajectory's bounding box is centred on the kernel centre (up to bilinear spread).
    for dim in (0, 1):
        nz = torch.nonzero(k.sum(dim) > 0).flatten()
        assert abs(nz.min().item() + nz.max().item() - (size - 1)) <= 1


def test_motion_kernel_without_anxiety_is_a_line() -> None:
    k = motion_kernel(15, np.random.default_rng(0), length=10, anxiety=0.0)
    pts = torch.nonzero(k > 1e-12).double()
    pts = pts - pts.mean(0)
    normal = torch.linalg.svd(pts, full_matrices=False).Vh[-1]
    # Bilinear splatting spreads a straight trajectory by at most one pixel across it.
    assert (pts @ normal).abs().max() <= 1.5
    assert (pts @ torch.linalg.svd(pts, full_matrices=False).Vh[0]).abs().max() >= 4


@pytest.mark.parametrize("seed", range(3))
def test_motion_kernel_line_centroid_is_centre(seed: int) -> None:
    # Bilinear splatting preserves first moments and a uniform-speed straight trajectory has
    # its mean at its midpoint, which bounding-box centring puts at the grid centre.
    size = 13
    k = motion_kernel(size, np.random.default_rng(seed), length=8.3, anxiety=0.0)
    t = torch.arange(size, dtype=torch.float64)
    assert (k.sum(1) * t).sum().item() == pytest.approx((size - 1) / 2, abs=1e-9)
    assert (k.sum(0) * t).sum().item() == pytest.approx((size - 1) / 2, abs=1e-9)


def test_bilinear_splat() -> None:
    k = _splat(np.array([2.25, 4.0]), np.array([3.5, 4.0]), 5)
    expected = np.zeros((5, 5))
    expected[2:4, 3:5] = np.outer([0.75, 0.25], [0.5, 0.5])
    expected[4, 4] = 1  # a point on the last row and column stays on the grid
    np.testing.assert_allclose(k, expected, rtol=0, atol=1e-15)


def test_motion_kernel_rejects_even_size() -> None:
    with pytest.raises(ValueError, match="odd"):
        motion_kernel(8, np.random.default_rng(0))


# --- inpainting -------------------------------------------------------------------------------


def test_random_mask() -> None:
    m = random_mask((24, 24), 0.5, np.random.default_rng(0))
    assert m.shape == (24, 24)
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert (m == 0).sum().item() == 288
    torch.testing.assert_close(m, random_mask((24, 24), 0.5, np.random.default_rng(0)))
    assert not torch.equal(m, random_mask((24, 24), 0.5, np.random.default_rng(1)))
    with pytest.raises(ValueError):
        random_mask((4, 4), 1.5, np.random.default_rng(0))


def test_inpainting_masks_and_is_projection() -> None:
    op = make_operator("inpainting")
    x = randn(*SHAPE)
    y = op.A(x)
    assert torch.all(y[..., op.mask == 0] == 0)
    torch.testing.assert_close(y[..., op.mask == 1], x[..., op.mask == 1], rtol=0, atol=0)
    torch.testing.assert_close(op.A(y), y, rtol=0, atol=0)


def test_inpainting_rejects_non_binary_mask() -> None:
    with pytest.raises(ValueError, match="0 and 1"):
        Inpainting(torch.full((4, 4), 0.5))


# --- downsampling -----------------------------------------------------------------------------

DOWN_NAMES = [n for n in OPERATOR_NAMES if n.startswith("downsampling")]


@pytest.mark.parametrize("name", DOWN_NAMES)
def test_downsampling_shapes_and_constant(name: str) -> None:
    op = make_operator(name)
    f = op.factor
    x = torch.full(SHAPE, -1.25, dtype=torch.float64)
    y = op.A(x)
    assert y.shape == (*SHAPE[:2], SHAPE[2] // f, SHAPE[3] // f)
    assert op.A_adjoint(y).shape == SHAPE
    if op.padding == "zero" and op.filter is not None:
        # The zero boundary darkens the rim: only pixels a kernel radius away stay constant.
        r = -(-(op.filter.kernel.shape[0] // 2) // f)
        y = y[..., r:-r, r:-r]
    torch.testing.assert_close(y, torch.full_like(y, -1.25), rtol=0, atol=1e-12)


def test_downsampling_without_filter_is_decimation() -> None:
    x = randn(*SHAPE)
    torch.testing.assert_close(Downsampling(3, filter=None).A(x), x[..., ::3, ::3])
    y = randn(2, 3, 8, 8)
    up = Downsampling(3, filter=None).A_adjoint(y)
    torch.testing.assert_close(up[..., ::3, ::3], y)
    assert up.abs().sum() == y.abs().sum()


def test_downsampling_box_x2_averages_neighbourhood() -> None:
    x = randn(1, 1, 8, 8)
    y = Downsampling(2, filter="box").A(x)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular")[0, 0]
    w = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    expected = torch.einsum("i,j,abij->ab", w, w, xp.unfold(0, 3, 2).unfold(1, 3, 2))
    torch.testing.assert_close(y[0, 0], expected)


@pytest.mark.parametrize("shape", [(2, 3, 25, 24), (2, 3, 24, 26)])
def test_downsampling_rejects_non_divisible_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"{shape[2]}, {shape[3]}\).*factor 3"):
        Downsampling(3).A(torch.zeros(shape))


@pytest.mark.parametrize("factor", [0, 1.5, -2])
def test_downsampling_rejects_bad_factor(factor) -> None:
    with pytest.raises(ValueError, match="factor"):
        Downsampling(factor)


def test_downsampling_rejects_unknown_filter() -> None:
    with pytest.raises(ValueError, match="'bicubic'"):
        Downsampling(2, filter="bicubic")
