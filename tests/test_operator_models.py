"""TV and TVS with a linear forward operator A (``solve(..., converge=True, A=A)``): the identity
path is today's solve, the exact Z-solves solve their linear systems, the Fourier and conjugate
gradient Z-solves agree, and the converged TV agrees with an independent primal–dual solver
(Chambolle & Pock, "A first-order primal-dual algorithm for convex problems with applications
to imaging", J. Math. Imaging Vis. 40, 2011) on every operator of pipeline.degrade.operators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.degrade.operators import (
    Blur,
    Downsampling,
    Identity,
    Inpainting,
    gaussian_kernel,
    motion_kernel,
    random_mask,
)
from pipeline.models import build_model
from pipeline.models.differences import spatial_difference, spectral_difference
from pipeline.models.operator_solve import (
    ConjugateGradientSolver,
    FourierSolver,
    circulant_preconditioner,
    factorise,
    operator_solver,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 3, 8, 8)
BOUNDARIES = ["periodic", "neumann"]


def image(seed: int, shape=SHAPE) -> torch.Tensor:
    """A piecewise-smooth cube in [0, 1] (float64)."""
    rng = np.random.default_rng(seed)
    _, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    spec = np.linspace(0.0, 1.0, c)[:, None, None]
    clean = 0.5 + 0.3 * np.sin(3 * xx + 2 * spec) * np.cos(2 * yy) + 0.2 * (xx > 0.5) * spec
    return torch.from_numpy(np.broadcast_to(clean, shape) + 0.05 * rng.standard_normal(shape))


def observe(A, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, w)``: A applied to :func:`image` plus noise, and a random positive weight map on
    y's grid (mean ≈ 1, away from 0)."""
    rng = np.random.default_rng(seed + 100)
    ax = A.A(image(seed))
    y = ax + 0.05 * torch.from_numpy(rng.standard_normal(ax.shape))
    w = torch.from_numpy(rng.lognormal(0.0, 0.5, size=ax.shape))
    return y, w


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


OPERATORS = {
    "blur_gaussian_circular": lambda: Blur(gaussian_kernel(1.0), "circular"),
    "blur_gaussian_zero": lambda: Blur(gaussian_kernel(1.0), "zero"),
    "blur_motion_circular": lambda: Blur(motion_kernel(5, np.random.default_rng(0)), "circular"),
    "inpainting_50": lambda: Inpainting(random_mask(SHAPE, 0.5, np.random.default_rng(1))),
    # Whole spectra missing: the mask is constant along the bands.
    "inpainting_spectra": lambda: Inpainting(
        random_mask((1, 1, *SHAPE[-2:]), 0.5, np.random.default_rng(2))
    ),
    "downsampling_x2_gaussian": lambda: Downsampling(2, "gaussian", "circular"),
}


# -- the identity is today's solve -------------------------------------------------------------


@pytest.mark.parametrize("name", ["tv", "tvs"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_identity_operator_is_the_denoising_solve(name, boundary):
    y, w = observe(Identity(), 0)
    model = build_model(name, boundary=boundary, tol=1e-7)
    today = model.solve(y, w, converge=True)
    for A in (None, Identity()):
        sol = model.solve(y, w, converge=True, A=A)
        assert float((sol.x - today.x).abs().max()) <= 1e-10
        assert sol.iterations == today.iterations
        assert torch.equal(sol.sample_iterations, today.sample_iterations)
        assert torch.equal(sol.objective, today.objective)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_operators_without_effect_reproduce_the_denoising_solve(boundary):
    # A full mask and a factor-1 plain decimation (S = I, no K: the direct path) start and step
    # exactly as the denoising solve; a centred unit kernel (the Fourier or CG path) to rounding.
    y, w = observe(Identity(), 3)
    model = build_model("tv", boundary=boundary, tol=1e-7)
    today = model.solve(y, w, converge=True)
    for A in (Inpainting(torch.ones(SHAPE)), Downsampling(1, None)):
        sol = model.solve(y, w, converge=True, A=A)
        assert torch.equal(sol.x, today.x)
        assert sol.iterations == today.iterations
    sol = model.solve(y, w, converge=True, A=Blur(torch.ones(1, 1, dtype=torch.float64)))
    assert float((sol.x - today.x).abs().max()) <= 1e-8  # CG for Neumann: inexact inner solves
    assert abs(sol.iterations - today.iterations) <= 5


# -- the Z-solves ------------------------------------------------------------------------------

DIFFERENCES = {
    "tv_periodic": lambda: spatial_difference("periodic"),
    "tvs_periodic": lambda: spectral_difference("periodic"),
    "tvs_neumann": lambda: spectral_difference("neumann"),
}


@pytest.mark.parametrize("difference", sorted(DIFFERENCES))
def test_fourier_solve_is_exact(difference):
    # (μ₁ KᵀK + μ₂ DᵀD) Z = b for a circular motion blur: the Fourier solve (2-D DFT, and the
    # band DFT or DCT for a spectral D) returns Z with a residual at rounding level.
    D = DIFFERENCES[difference]()
    K = Blur(motion_kernel(5, np.random.default_rng(0)), "circular")
    b = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 4, 8, 10)))
    solve = FourierSolver(D, K, b.shape, b.dtype, b.device)
    mu1, mu2 = 0.7, 1.9
    z = solve(b, mu1, mu2)
    gram = mu1 * K.A_adjoint(K.A(z)) + mu2 * D.adjoint(D(z))
    assert float((gram - b).abs().max()) <= 1e-10 * float(b.abs().max())


@pytest.mark.parametrize("preconditioned", [False, True])
def test_conjugate_gradients_solve_the_system_per_sample(preconditioned):
    # Zero-boundary blur and Neumann D (no exact transform): CG to 1e-12 of the initial
    # residual; a batch gives each sample's own solve. The circulant preconditioner (the
    # periodic problem's exact solve) cuts the iterations.
    D, K = spatial_difference("neumann"), Blur(gaussian_kernel(1.0), "zero")
    b = torch.from_numpy(np.random.default_rng(5).standard_normal((3, 2, 16, 16)))
    b[1] *= 1e3  # a different scale: per-sample stopping
    pre = circulant_preconditioner(D, K, b.shape, b.dtype, b.device) if preconditioned else None
    cg = ConjugateGradientSolver(D, K, tol=1e-12, max_iterations=500, preconditioner=pre)
    z = cg(b, 0.5, 1.5, torch.zeros_like(b))
    assert cg.iterations <= (30 if preconditioned else 80)  # measured: 25 and 68
    gram = cg.gram(z, 0.5, 1.5)
    for i in range(3):
        assert float((gram[i] - b[i]).norm() / b[i].norm()) <= 1e-11
        alone = cg(b[i : i + 1], 0.5, 1.5, torch.zeros_like(b[i : i + 1]))
        assert float((alone[0] - z[i]).abs().max()) <= 1e-12 * float(z[i].abs().max())


def test_factorisation_and_paths():
    D = spatial_difference("periodic")
    shape, f64, cpu = SHAPE, torch.float64, torch.device("cpu")
    blur = Blur(gaussian_kernel(1.0))
    assert isinstance(operator_solver(D, blur, shape, f64, cpu), FourierSolver)
    assert isinstance(
        operator_solver(D, blur, shape, f64, cpu, method="cg"), ConjugateGradientSolver
    )
    pcg = operator_solver(spatial_difference("neumann"), blur, shape, f64, cpu)
    assert isinstance(pcg, ConjugateGradientSolver) and pcg.preconditioner is not None
    assert operator_solver(D, blur, shape, f64, cpu, method="cg").preconditioner is None
    assert isinstance(
        operator_solver(spectral_difference("neumann"), blur, shape, f64, cpu), FourierSolver
    )
    down = Downsampling(2, "gaussian", "circular")
    factors = factorise(down)
    assert factors.K is down.filter and factors.S.filter is None and factors.S.factor == 2
    x = image(0)
    assert torch.equal(factors.S.A(factors.K.A(x)), down.A(x))
    mask = Inpainting(torch.ones(SHAPE))
    assert factorise(mask).S is mask and factorise(mask).K is None
    assert factorise(blur).S is None and factorise(blur).K is blur


@pytest.mark.parametrize("name", ["tv"])
def test_fourier_and_conjugate_gradient_paths_agree(name):
    # Periodic D and a circular blur: the Fourier solve against forced CG. (TVS does not take a
    # blur: spectral TV leaves the blur's small eigenvalues unregularised, the problem is ill
    # posed; its 3-axis Fourier and DCT ⊗ DFT solves are checked by their linear solves above.)
    A = Blur(gaussian_kernel(1.0), "circular")
    y, w = observe(A, 6)
    fourier = build_model(name, tol=1e-8)
    cg = build_model(name, tol=1e-8, operator_solve="cg", cg_tol=1e-6)
    a = fourier.solve(y, w, converge=True, A=A)
    b = cg.solve(y, w, converge=True, A=A)
    assert bool(a.converged.all()) and bool(b.converged.all())
    assert float((a.x - b.x).abs().max()) <= 1e-6
    assert float(a.objective) == pytest.approx(float(b.objective), rel=1e-9)
    assert a.iterations == pytest.approx(b.iterations, abs=10)


def test_preconditioned_and_plain_conjugate_gradients_agree():
    # Neumann D with a circular blur (no exact solve): the default preconditioned CG at its
    # default inner tolerance against plain CG at 1e-8.
    A = Blur(motion_kernel(5, np.random.default_rng(0)), "circular")
    y, w = observe(A, 13)
    a = build_model("tv", boundary="neumann", tol=1e-9).solve(y, w, converge=True, A=A)
    plain = build_model("tv", boundary="neumann", tol=1e-9, operator_solve="cg", cg_tol=1e-8)
    b = plain.solve(y, w, converge=True, A=A)
    assert bool(a.converged.all()) and bool(b.converged.all())
    assert float((a.x - b.x).abs().max()) <= 1e-6


# -- agreement with an independent solver ------------------------------------------------------


def dense(op, shape) -> np.ndarray:
    """The matrix of a linear map on images of ``shape``: one column per basis image."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return op(basis).reshape(n, -1).T.numpy()


def chambolle_pock(A: np.ndarray, D: np.ndarray, y, w, lam: float, iterations: int):
    r"""Chambolle–Pock (2011, Algorithm 1, θ = 1) on :math:`\min_x F(Kx)`, :math:`K = (A; D)`,
    :math:`F(v, u) = \tfrac12 \sum w (y - v)^2 + \lambda \|u\|_1`, :math:`G = 0`, with
    :math:`\tau = \sigma = 0.99 / \|K\|`. Dual proxes: :math:`(p - \sigma y)/(1 + \sigma/w)`
    and the clip to :math:`[-\lambda, \lambda]`."""
    step = 0.99 / np.linalg.norm(np.vstack([A, D]), 2)
    x = np.zeros(A.shape[1])
    bar, p, q = x.copy(), np.zeros(A.shape[0]), np.zeros(D.shape[0])
    for _ in range(iterations):
        p = (p + step * (A @ bar) - step * y) / (1 + step / w)
        q = np.clip(q + step * (D @ bar), -lam, lam)
        new = x - step * (A.T @ p + D.T @ q)
        bar, x = 2 * new - x, new
    return x


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_converged_tv_matches_primal_dual(operator, boundary):
    # 4000 primal–dual iterations reach ≈ 1e-10 RMS here. With inpainting the minimiser is not
    # unique (a missing pixel between two observed values may take any value between them at
    # the same TV), so there only A x — unique: the fidelity is strictly convex in A x, w > 0 —
    # and the objective are compared.
    A = OPERATORS[operator]()
    y, w = observe(A, 7)
    model = build_model("tv", boundary=boundary, tol=1e-9)
    sol = model.solve(y, w, converge=True, A=A)
    assert bool(sol.converged.all())
    assert sol.x.shape == SHAPE
    D = spatial_difference(boundary)
    x = chambolle_pock(
        dense(A.A, SHAPE),
        dense(D, SHAPE),
        y.numpy().ravel(),
        w.numpy().ravel(),
        model.params.lam,
        4000,
    )
    ref = torch.from_numpy(x.reshape(SHAPE))
    ref_objective = float(model.objective(ref, y, w, A))
    assert float(sol.objective) == pytest.approx(ref_objective, rel=1e-6)
    assert float(sol.objective) >= ref_objective * (1 - 1e-6)  # only a minimiser
    assert rms(A.A(sol.x), A.A(ref)) <= 1e-4
    if not operator.startswith("inpainting"):
        assert rms(sol.x, ref) <= 1e-4


# -- objective, checks, batches ----------------------------------------------------------------


def test_objective_with_operator_is_hand_computed():
    A = Downsampling(2, "gaussian", "circular")
    x = image(8)
    y, w = observe(A, 8)
    model = build_model("tv", lam=0.3, boundary="neumann")
    ax = A.A(x).numpy()
    fidelity = 0.5 * float(np.sum(w.numpy() * (y.numpy() - ax) ** 2))
    xn = x.numpy()[0]
    tv = float(np.abs(np.diff(xn, axis=1)).sum() + np.abs(np.diff(xn, axis=2)).sum())
    assert float(model.objective(x, y, w, A)) == pytest.approx(fidelity + 0.3 * tv, rel=1e-12)
    assert torch.equal(model.objective(x, x, None, Identity()), model.objective(x, x))


def test_operator_checks():
    y, w = observe(Identity(), 9)
    blur = Blur(gaussian_kernel(1.0))
    for name in ("nn", "tv_l1"):
        with pytest.raises(ValueError, match=name):
            build_model(name).solve(y, w, converge=True, A=blur)
        # The identity is every model's denoising problem.
        assert build_model(name).solve(y, w, A=Identity()).x.shape == y.shape
    tv = build_model("tv")
    with pytest.raises(NotImplementedError, match="converge=True"):
        tv.solve(y, w, A=blur)
    with pytest.raises(ValueError, match="grid"):  # a per-sample mask of another batch size
        tv.solve(y, w, converge=True, A=Inpainting(torch.ones(2, 3, 8, 8)))
    down = Downsampling(2)
    small = down.A(y)
    with pytest.raises(ValueError, match="broadcast"):  # w on the full grid
        tv.solve(small, w, converge=True, A=down)
    with pytest.raises(ValueError, match="apply"):  # a mask of another size
        tv.solve(y, w, converge=True, A=Inpainting(torch.ones(1, 3, 6, 6)))
    with pytest.raises(ValueError, match="shape"):
        tv.objective(y, small, None, down.filter)


def test_batch_is_the_per_sample_solves():
    # Neumann differences with a circular blur: the CG path, whose inner iterations stop per
    # sample; the ADMM samples freeze on their own.
    A = Blur(gaussian_kernel(1.0), "circular")
    ys, ws = zip(*(observe(A, s) for s in (10, 11, 12)), strict=True)
    ys = (ys[0], ys[1], 0.3 * ys[2])  # different contrasts: different iteration counts
    model = build_model("tv", boundary="neumann", tol=1e-7)
    batch = model.solve(torch.cat(ys), torch.cat(ws), converge=True, A=A)
    for i in range(3):
        alone = model.solve(ys[i], ws[i], converge=True, A=A)
        assert int(batch.sample_iterations[i]) == int(alone.sample_iterations[0])
        assert float((batch.x[i] - alone.x[0]).abs().max()) <= 1e-10
        assert float(batch.objective[i]) == pytest.approx(float(alone.objective[0]), rel=1e-12)


@pytest.mark.parametrize("A", [Blur(gaussian_kernel(1.0)), Downsampling(2)], ids=["blur", "sr"])
def test_spectral_tv_refuses_what_it_cannot_regularise(A):
    y, w = observe(A, 1)
    with pytest.raises(ValueError, match=r"'tvs'.*takes the operators identity, inpaint only"):
        build_model("tvs").solve(y, w, converge=True, A=A)
