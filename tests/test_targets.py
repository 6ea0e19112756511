"""Target models LRTV and E3DTV: building blocks, convergence to the minimiser, agreement with an
independent solver, recovery of a synthetic low-rank cube with sparse corruption, one band and
Neumann boundaries (what every registered model shares: test_model_contract.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.evaluate.metrics import mpsnr
from pipeline.models import MODELS, build_model
from pipeline.models.differences import FiniteDifference
from pipeline.models.e3dtv import E3DTV, E3DTVParams, polar
from pipeline.models.lrtv import LRTV, LRTVParams
from pipeline.models.neumann_solve import NeumannSolver, dct_matrix
from pipeline.models.sparse_fidelity import fidelity_step, huber_fidelity, sparse_component
from pipeline.schema import ConfigError

TARGETS = ["lrtv", "e3dtv"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


def cube(seed: int, shape=(1, 5, 10, 10), sigma: float = 0.1) -> torch.Tensor:
    """A smooth, band-correlated cube with an edge, plus Gaussian noise (float64)."""
    rng = np.random.default_rng(seed)
    _, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    spec = np.linspace(0.0, 1.0, c)[:, None, None]
    clean = 0.5 + 0.3 * np.sin(3 * xx + 2 * spec) * np.cos(2 * yy) + 0.2 * (xx > 0.5) * spec
    clean = np.broadcast_to(clean, shape)
    return torch.from_numpy(clean + sigma * rng.standard_normal(shape))


def weights(seed: int, like: torch.Tensor, spread: float = 0.5) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.lognormal(0.0, spread, size=like.shape)).to(like.dtype)


def low_rank_cube(seed: int, c: int = 8, h: int = 16, w: int = 16):
    """Rank 3: smooth spectra × piecewise-constant abundance maps; Gaussian σ = 0.05 on every
    band plus salt-and-pepper on 20 % of the pixels of every third band. Returns
    ``(clean, noisy, corrupted)`` as numpy (C, H, W)."""
    rng = np.random.default_rng(seed)
    lam = np.linspace(0.0, 1.0, c)
    shapes = ((0.5, 0.1), (1.0, 0.3), (0.7, 0.6))  # (frequency, phase) of each spectrum
    spectra = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f * lam + p)) for f, p in shapes])
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.stack(
        [
            0.2 + (xx < w // 2),
            ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2).astype(float),
            (yy > 2 * h // 3).astype(float),
        ]
    )
    clean = np.einsum("kc,khw->chw", spectra, maps) / 2.0
    noisy = clean + 0.05 * rng.standard_normal(clean.shape)
    corrupted = np.zeros(clean.shape, dtype=bool)
    for b in range(0, c, 3):
        hit = rng.random((h, w)) < 0.2
        corrupted[b] = hit
        noisy[b][hit] = rng.integers(0, 2, int(hit.sum()))
    return clean, noisy, corrupted


# -- registry and parameters -----------------------------------------------------------------


def test_registry_builds_targets_with_reference_defaults():
    # Names, classes, solution fields, batches and w-gradients: test_model_contract.py.
    for name, cls, params in (("lrtv", LRTV, LRTVParams), ("e3dtv", E3DTV, E3DTVParams)):
        assert MODELS[name] == (cls, params)
        model = build_model(name)
        assert model.params.boundary == "neumann"  # targets: first and last bands never coupled
        assert model.solve(cube(23, (2, 4, 8, 8))).iterations == 40  # the published codes' 40
    lrtv = build_model("lrtv").params
    assert (lrtv.nuclear, lrtv.tau, lrtv.lam, lrtv.rank) == (0.02, 0.02, 0.2, None)
    e3dtv = build_model("e3dtv").params
    assert (e3dtv.tau, e3dtv.lam, e3dtv.rank, e3dtv.tol) == (0.04, 0.2, 13, 3e-3)
    assert build_model("lrtv").alpha(31, 64 * 64) == pytest.approx(0.02 * (math.sqrt(31) + 64))


def test_parameter_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"model lrtv\.lam"):
        build_model("lrtv", lam=0.0)
    with pytest.raises(ConfigError, match=r"model lrtv\.rank"):
        build_model("lrtv", rank=0)
    with pytest.raises(ConfigError, match=r"model e3dtv\.rank"):
        build_model("e3dtv", rank=0)
    with pytest.raises(ConfigError, match=r"model e3dtv\.tau"):
        build_model("e3dtv", tau=-1.0)
    with pytest.raises(ConfigError, match=r"model e3dtv\.boundary"):
        build_model("e3dtv", boundary="mirror")


# -- the sparse fidelity and the Procrustes step -----------------------------------------------


def test_huber_fidelity_is_the_minimum_over_the_sparse_term():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    w = weights(0, y)
    w[0, 0, 0] = 0.0  # switched-off pixels cost nothing
    lam = 0.2
    s = sparse_component(x, y, w, lam)

    def cost(s):
        return 0.5 * (w * (y - x - s) ** 2).flatten(1).sum(1) + lam * s.abs().flatten(1).sum(1)

    direct = cost(s)
    assert torch.allclose(huber_fidelity(x, y, w, lam), direct, rtol=1e-12)
    assert float(s[0, 0, 0].abs().max()) == 0.0
    for eps in (1e-3, -1e-3):  # S* is the minimiser: moving it never lowers the cost
        assert bool((cost(s + eps) >= direct - 1e-12).all())


def test_fidelity_step_is_the_exact_joint_minimiser():
    """argmin over (X, S) of ½w(y − X − S)² + λ|S| + μ/2 (X − v)², against a dense 2-D grid
    search per pixel (exact to the grid spacing)."""
    rng = np.random.default_rng(1)
    lam, mu = 0.2, 0.7
    grid = np.linspace(-2.0, 2.0, 801)
    xs, ss = np.meshgrid(grid, grid, indexing="ij")
    for _ in range(12):
        y, v = rng.uniform(-1, 1, 2)
        w = float(rng.choice([0.0, 0.3, 1.0, 5.0]))
        cost = 0.5 * w * (y - xs - ss) ** 2 + lam * np.abs(ss) + 0.5 * mu * (xs - v) ** 2
        i = np.unravel_index(np.argmin(cost), cost.shape)
        t = lambda a: torch.tensor([a], dtype=torch.float64)  # noqa: E731
        x = float(fidelity_step(t(y), t(w), t(v), mu, lam)[0])
        assert x == pytest.approx(grid[i[0]], abs=0.006)


def test_polar_is_the_procrustes_maximiser():
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(4, 9, 3, generator=gen, dtype=torch.float64)
    q = polar(m)
    assert torch.allclose(q.mT @ q, torch.eye(3, dtype=torch.float64).expand(4, 3, 3), atol=1e-12)
    best = (q * m).sum((-2, -1))
    for _ in range(20):  # no orthonormal frame beats it
        other, _ = torch.linalg.qr(torch.randn(4, 9, 3, generator=gen, dtype=torch.float64))
        assert bool(((other * m).sum((-2, -1)) <= best + 1e-12).all())
    with pytest.raises(ValueError, match="tall"):
        polar(m.mT)


def test_polar_gradient():
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(polar, (m,), eps=1e-6, atol=1e-8, rtol=1e-6)
    # Repeated singular values: torch.linalg.svd's own backward is not finite there.
    q, _ = torch.linalg.qr(torch.randn(6, 3, generator=gen, dtype=torch.float64))
    rep = (2.0 * q).requires_grad_(True)  # σ = (2, 2, 2)
    (grad,) = torch.autograd.grad((polar(rep) * torch.randn(6, 3, generator=gen)).sum(), rep)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("dims", [(-3, -2, -1), (-2, -1), (-3,)])
def test_dense_cosine_solve_is_exact(dims):
    """The targets' Neumann solve (dense DCT-II) against DᵀD applied back and against the
    symmetric-extension FFT of FiniteDifference.solve, on odd and even sizes."""
    D = FiniteDifference(dims, "neumann")
    b = torch.randn(2, 7, 6, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    z = NeumannSolver(dims, b.shape, b.dtype, b.device)(b, 0.3, 1.7)
    assert float((0.3 * z + 1.7 * D.adjoint(D(z)) - b).abs().max()) <= 1e-12
    assert float((z - D.solve(b, 0.3, 1.7)).abs().max()) <= 1e-12
    q, lam = dct_matrix(5)
    assert torch.allclose(q @ q.T, torch.eye(5, dtype=torch.float64), atol=1e-14)
    basis = torch.eye(5, dtype=torch.float64).reshape(1, 5, 5, 1)
    gram = FiniteDifference((-2,), "neumann").gram(basis)[0, :, :, 0]
    assert torch.allclose(q @ gram @ q.T, torch.diag(lam), atol=1e-13)


def test_neumann_3d_difference_never_couples_first_and_last_band():
    c = 6
    basis = torch.eye(c, dtype=torch.float64).reshape(c, c, 1, 1).expand(c, c, 3, 3)
    for boundary, corner in (("periodic", -3 * 3.0), ("neumann", 0.0)):
        D = FiniteDifference((-3, -2, -1), boundary)
        gram = D.adjoint(D(basis)).sum((-2, -1))  # band-to-band blocks of DᵀD
        assert float(gram[0, c - 1]) == corner
    assert E3DTV().difference().boundary == "neumann"
    assert LRTV().difference().dims == (-2, -1)  # LRTV's TV is spatial only


# -- convergence -----------------------------------------------------------------------------


def objective_trajectory(model, y, w, iterations):
    """The objective at every iterate and how far the iterate is from feasible (relative
    ‖W − DZ‖ for E3DTV, whose iterates violate D_j Z = U_j V_jᵀ; 0 for LRTV, whose objective is
    evaluated at Z itself)."""
    ctx, state = model.initial_state(y, w)
    values, infeasible = [], []
    for k in range(iterations):
        state = model.step(ctx, state, k)
        if isinstance(model, E3DTV):
            values.append(float(model.state_objective(ctx, state)))
            gap = (state["wf"] - state["dz"]).norm() / state["dz"].norm()
            infeasible.append(float(gap))
        else:
            values.append(float(model.objective(model.output(ctx, state), y, w)))
            infeasible.append(0.0)
    return np.array(values), np.array(infeasible)


@pytest.mark.parametrize("name", TARGETS)
def test_objective_settles_at_its_converged_value(name):
    _, noisy, corrupted = low_rank_cube(4)
    y = torch.from_numpy(noisy)[None]
    w = torch.from_numpy(np.where(corrupted, 0.0, 1.0))[None]
    model = build_model(name, tol=1e-5)  # E3DTV's default is looser; these cubes reach 1e-5
    tol = model.params.tol
    sol = model.solve(y, w, converge=True)
    assert bool(sol.converged.all())
    final = float(sol.objective)
    values, infeasible = objective_trajectory(model, y, w, sol.iterations)
    assert values[-1] == pytest.approx(final, rel=1e-12)
    # Among the iterates that (nearly) satisfy the constraints, none is better than the end.
    feasible = values[infeasible <= 10 * tol]
    assert feasible.size >= sol.iterations // 4
    assert final <= feasible.min() + 1e-4 * abs(final)
    assert final < values[model.params.iterations - 1] or infeasible[39] > 10 * tol
    tail = values[-max(10, sol.iterations // 10) :]
    assert np.abs(tail - final).max() <= 1e-4 * abs(final)  # settled
    if name == "lrtv":  # convex: no small perturbation of the minimiser lowers the objective
        gen = torch.Generator().manual_seed(4)
        for _ in range(5):
            d = torch.randn(y.shape, generator=gen, dtype=y.dtype)
            moved = float(model.objective(sol.x + 1e-3 * d / d.norm(), y, w))
            assert moved >= final - 1e-6 * abs(final)


# The converged output is within FACTOR · tol (relative RMS) of a run ten times as long.
FACTOR = 10.0


@pytest.mark.parametrize("name", TARGETS)
def test_converged_result_is_near_a_ten_times_longer_run(name):
    _, noisy, corrupted = low_rank_cube(5, c=6, h=12, w=12)
    y = torch.from_numpy(noisy)[None]
    w = torch.from_numpy(np.where(corrupted, 0.0, 1.0))[None]
    tight = {"tol": 1e-5}  # LRTV's default; E3DTV's default 3e-3 is tested below
    model = build_model(name, **tight)
    sol = model.solve(y, w, converge=True)
    assert bool(sol.converged.all())
    long = 10 * sol.iterations
    reference = build_model(name, min_iterations=long, max_iterations=long, **tight).solve(
        y, w, converge=True
    )
    assert reference.iterations == long
    scale = float(reference.x.pow(2).mean().sqrt())
    assert rms(sol.x, reference.x) <= FACTOR * model.params.tol * scale


def test_e3dtv_default_tolerance_costs_a_few_hundredths_of_a_db():
    """E3DTV's default tol (3e-3, see its module docstring) against tol = 1e-5."""
    clean, noisy, corrupted = low_rank_cube(5, c=6, h=12, w=12)
    y = torch.from_numpy(noisy)[None]
    for w in (None, torch.from_numpy(np.where(corrupted, 0.0, 1.0))[None]):
        loose = build_model("e3dtv").solve(y, w, converge=True)
        tight = build_model("e3dtv", tol=1e-5).solve(y, w, converge=True)
        assert bool(loose.converged.all()) and loose.iterations < tight.iterations
        a, b = mpsnr(clean, loose.x[0].numpy()), mpsnr(clean, tight.x[0].numpy())
        assert abs(a - b) <= 0.05, (a, b)


def cp_lrtv(y, w, alpha, tau, lam, iterations=6000):
    """Independent solver: Chambolle–Pock (2011) primal–dual iterations on
    min_x Σ huber_{w,λ}(y − x) + α‖x‖_* + τ‖Dx‖₁ (Neumann spatial D), numpy only."""
    c, h, wd = y.shape

    def diff(x):
        dv = np.concatenate([np.diff(x, axis=1), np.zeros((c, 1, wd))], axis=1)
        dh = np.concatenate([np.diff(x, axis=2), np.zeros((c, h, 1))], axis=2)
        return np.stack([dv, dh])

    def diff_t(p):
        v, hh = p[0][:, :-1], p[1][:, :, :-1]
        out = np.zeros((c, h, wd))
        out[:, 1:] += v
        out[:, :-1] -= v
        out[:, :, 1:] += hh
        out[:, :, :-1] -= hh
        return out

    def prox_fidelity(v, t):  # argmin_x ½(x − v)²/t + huber(y − x)
        d = y - v
        r = np.where(np.abs(d) * w <= lam * (1 + t * w), d / (1 + t * w), d - t * lam * np.sign(d))
        return y - r

    sigma = step = 1.0 / 3.0  # σ·τ·‖K‖² ≤ 1 with ‖K‖² ≤ 1 + 8
    x = y.copy()
    xbar = x.copy()
    p1 = np.zeros_like(y)
    p2 = np.zeros((2, c, h, wd))
    for _ in range(iterations):
        u, s, vt = np.linalg.svd((p1 + sigma * xbar).reshape(c, -1), full_matrices=False)
        p1 = ((u * np.minimum(s, alpha)) @ vt).reshape(y.shape)  # onto ‖·‖₂ ≤ α
        p2 = np.clip(p2 + sigma * diff(xbar), -tau, tau)
        x_new = prox_fidelity(x - step * (p1 + diff_t(p2)), step)
        xbar = 2 * x_new - x
        x = x_new
    return x


def test_lrtv_agrees_with_chambolle_pock():
    y = cube(6, (1, 4, 8, 8), sigma=0.15)
    y[0, 1, 2, 3] = 1.5  # an outlier for the sparse term
    w = weights(6, y, 0.3)
    model = build_model("lrtv", nuclear=0.05, tau=0.05, lam=0.2, tol=1e-7)
    sol = model.solve(y, w, converge=True)
    assert bool(sol.converged.all())
    ref = cp_lrtv(y[0].numpy(), w[0].numpy(), model.alpha(4, 64), 0.05, 0.2)
    ref_t = torch.from_numpy(ref)[None]
    assert rms(sol.x, ref_t) <= 1e-4
    assert float(sol.objective) == pytest.approx(float(model.objective(ref_t, y, w)), rel=1e-6)
    s = model.sparse(sol.x, y, w)
    assert float(s[0, 1, 2, 3]) > 0.5  # the outlier went to S


# -- what the targets are for ----------------------------------------------------------------


@pytest.mark.parametrize("name", TARGETS)
def test_recovers_low_rank_cube_when_w_zeroes_corrupted_pixels(name):
    clean, noisy, corrupted = low_rank_cube(7)
    y = torch.from_numpy(noisy)[None]
    w = torch.from_numpy(np.where(corrupted, 0.0, 1.0))[None]
    model = build_model(name)
    sol = model.solve(y, w, converge=True)
    assert bool(sol.converged.all())
    before = mpsnr(clean, noisy)
    after = mpsnr(clean, sol.x[0].numpy())
    assert after > before + 10.0, (before, after)


def test_lrtv_rank_cap():
    """With ``rank`` the low-rank variable is truncated: the output has r significant singular
    values (the rest within the primal residual), and the cap changes the result."""
    _, noisy, corrupted = low_rank_cube(10, c=6, h=12, w=12)
    y = torch.from_numpy(noisy)[None]
    w = torch.from_numpy(np.where(corrupted, 0.0, 1.0))[None]
    capped = build_model("lrtv", rank=2).solve(y, w, converge=True)
    free = build_model("lrtv").solve(y, w, converge=True)
    assert bool(capped.converged.all())
    sv = torch.linalg.svdvals(capped.x[0].reshape(6, -1))
    assert float(sv[2:].max()) <= 1e-3 * float(sv[0])
    assert float(torch.linalg.svdvals(free.x[0].reshape(6, -1))[2]) > 1e-2 * float(sv[0])


def test_lrtv_rejects_one_band():
    with pytest.raises(ValueError, match=r"lrtv needs at least 2 bands, got C = 1"):
        build_model("lrtv").solve(torch.rand(1, 1, 8, 8, dtype=torch.float64))


def test_e3dtv_with_one_band_is_anisotropic_tv():
    """C = 1: the spectral gradient vanishes, V = ±1, so E3DTV is τ‖D_v x‖₁ + τ‖D_h x‖₁; with no
    outliers below the sparse threshold it is the TV model."""
    y = cube(8, (1, 1, 12, 12))
    w = weights(8, y, 0.3)
    e3 = build_model("e3dtv", tau=0.1, lam=1e6, tol=1e-6)
    tv = build_model("tv", lam=0.1, boundary="neumann", tol=1e-6)
    a, b = e3.solve(y, w, converge=True), tv.solve(y, w, converge=True)
    assert bool(a.converged.all()) and bool(b.converged.all())
    assert rms(a.x, b.x) <= 1e-5
    assert float(a.objective) == pytest.approx(float(b.objective), rel=1e-6)
