"""The unrolled DLW source models follow the authors' iteration exactly.

Each reference below is an independent transcription of the authors' code (Rui, Cao, Zhao, Meng,
Ng, arXiv 2301.06081; github.com/xyrui/DLWnet, ``net.py``: ``HWTV``, ``HWTV_S``, ``HWNUCLR``,
with ``Shrink``, ``TV_solver``, ``diff_*`` and ``thres_mat`` of ``methods.py``) in plain float64
torch: its own periodic differences (``torch.roll``), its multiplier signs (``G``), its FFT
denominator computed from the difference kernel (not from a closed form), the spectral model on
the cube permuted to put the bands last as the authors do, and SVT by ``torch.linalg.svd`` of the
matrix itself. The unrolled models must give the same outputs and the same gradients with respect
to the weight map (autograd through both) to 1e-10 relative: the order of the updates changes
both (checked too, so the comparison can fail).
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.models import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (2, 5, 8, 9)


def inputs(seed: int, shape=SHAPE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random cube in [0, 1], random positive weights (log-normal, mean ≈ 1) and a random
    direction ``g`` for the gradient ``∂⟨g, x(w)⟩/∂w`` (float64)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=gen, dtype=torch.float64)
    w = torch.exp(0.5 * torch.randn(shape, generator=gen, dtype=torch.float64))
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    return y, w, g


# -- the authors' iteration, transcribed --------------------------------------------------------


def shrink(x, t):
    return torch.sign(x) * torch.clamp(x.abs() - t, min=0.0)


def diff(x, dim):  # methods.diff_h / diff_v / diff_s: periodic forward difference
    return torch.roll(x, -1, dims=dim) - x


def diff_c(x, dim):  # methods.diff_hc / diff_vc / diff_sc: its adjoint
    return torch.roll(x, 1, dims=dim) - x


def kernel_symbol(shape, dims):
    """|FFT|² of the difference kernels along ``dims`` on the last two axes of ``shape``: the
    reference's ``demo`` (``p2o`` of [1, −1]), here from the impulse response of ``diff``."""
    delta = torch.zeros(shape[-2:], dtype=torch.float64)
    delta[0, 0] = 1.0
    return sum(torch.fft.rfft2(diff(delta, d)).abs() ** 2 for d in dims)


def reference_tv(y, w, dims, lam=0.1, mu1=0.1, mu2=0.1, rho=1.05, iterations=20):
    """``HWTV.forward`` (dims (−2, −1)) / ``HWTV_S.forward`` (dims (−1,), bands last)."""
    demo = kernel_symbol(y.shape, dims)
    g1 = 0.0
    g2 = [0.0 for _ in dims]
    x, z = y.clone(), y.clone()
    dz = [diff(z, d) for d in dims]
    for _ in range(iterations):
        u = [shrink(dz[i] - g2[i] / mu2, lam / mu2) for i in range(len(dims))]
        f = x + g1 / mu1
        rhs = sum(diff_c(u[i] + g2[i] / mu2, d) for i, d in enumerate(dims)) + (mu1 / mu2) * f
        z = torch.fft.irfft2(torch.fft.rfft2(rhs) / (demo + mu1 / mu2), s=list(y.shape[-2:]))
        dz = [diff(z, d) for d in dims]
        x = (w * y + mu1 * z - g1) / (w + mu1)
        g1 = g1 + mu1 * (x - z)
        g2 = [g2[i] + mu2 * (u[i] - dz[i]) for i in range(len(dims))]
        mu1, mu2 = rho * mu1, rho * mu2
    return z


def reference_tvs(y, w, **kw):
    """The authors call ``HWTV_S`` on ``Y.permute(0, 2, 3, 1)`` (bands last) and permute back."""
    z = reference_tv(y.permute(0, 2, 3, 1), w.permute(0, 2, 3, 1), dims=(-1,), **kw)
    return z.permute(0, 3, 1, 2)


def reference_nn(y, w, iterations=15, alpha=1.03):
    """``HWNUCLR.forward(255 y, w, mp=255)``; SVT by the SVD of the matrix."""
    b, c, h, wd = y.shape
    mp = 255.0
    ys, ws = (mp * y).reshape(b, c, h * wd), w.reshape(b, c, h * wd)
    mu = 2.5 / math.sqrt(h * wd) / mp
    lam = mu / 0.1
    low, g = ys.clone(), 0.0
    for _ in range(iterations):
        m = low + g / mu
        uu, s, vh = torch.linalg.svd(m, full_matrices=False)
        z = (uu * torch.clamp(s - 1.0 / mu, min=0.0).unsqueeze(-2)) @ vh
        low = (lam * ws * ys + mu * z - g) / (lam * ws + mu)
        g = g + mu * (low - z)
        mu = mu * alpha
    return z.reshape(y.shape) / mp


REFERENCES = {
    "tv": lambda y, w: reference_tv(y, w, dims=(-2, -1)),
    "tvs": reference_tvs,
    "nn": reference_nn,
}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def output_and_gradient(solve, y, w, g):
    w = w.clone().requires_grad_(True)
    x = solve(y, w)
    (grad,) = torch.autograd.grad((g * x).sum(), w)
    return x.detach(), grad


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tv", "tvs", "nn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_unrolled_source_is_the_reference_iteration(name, seed):
    y, w, g = inputs(seed)
    model = build_model(name)
    x, grad = output_and_gradient(lambda a, b: model.solve(a, b).x, y, w, g)
    x_ref, grad_ref = output_and_gradient(REFERENCES[name], y, w, g)
    assert relative_error(x, x_ref) <= 1e-10
    assert relative_error(grad, grad_ref) <= 1e-10
    # The comparison can fail: the standard ADMM order (the converged mode's) run for the same
    # iterations gives another output and gradient, ≥ 1000× the tolerance away (measured: TV and
    # TVS ≈ 5e-4 output, 2e-2 gradient; NN ≈ 3e-7 and 6e-6, its fidelity step barely moves L).
    w_other = w.clone().requires_grad_(True)
    ctx, state = model.initial_state(y, w_other)
    for k in range(model.params.iterations):
        state = model.step(ctx, state, k)
    other = model.output(ctx, state)
    (other_grad,) = torch.autograd.grad((g * other).sum(), w_other)
    assert relative_error(other.detach(), x_ref) > 1e-7
    assert relative_error(other_grad, grad_ref) > 1e-7


def test_unrolled_step_by_step_is_the_solve():
    """The public ``unrolled_step`` runs the solve's iteration."""
    y, w, _ = inputs(3, (1, 3, 6, 7))
    for name in ("tv", "tvs", "nn"):
        model = build_model(name)
        ctx, state = model.initial_state(y, w)
        for k in range(model.params.iterations):
            state = model.unrolled_step(ctx, state, k)
        assert torch.equal(model.output(ctx, state), model.solve(y, w).x)


def test_spectral_reference_is_periodic_along_the_bands():
    """The reference differences band C−1 with band 0 (``torch.roll`` on the permuted cube): the
    default (periodic) TVS matches it, the Neumann variant (no difference across the band ends)
    does not."""
    y, w, _ = inputs(4, (1, 5, 4, 4))
    ref = reference_tvs(y, w)
    assert relative_error(build_model("tvs").solve(y, w).x, ref) <= 1e-10
    assert relative_error(build_model("tvs", boundary="neumann").solve(y, w).x, ref) > 1e-3
