"""Source variational models: exactness of the building blocks, fixed points, agreement with
independent solvers and gradients on rank-deficient cubes (what every registered model shares,
batches and gradients with respect to the weight map included: test_model_contract.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.models import MODELS, Solution, build_model
from pipeline.models.differences import FiniteDifference, spatial_difference, spectral_difference
from pipeline.models.svt import svt, svt_reference
from pipeline.schema import ConfigError

MODEL_NAMES = ["tv", "tvs", "nn", "tv_l1"]
TV_FAMILY = ["tv", "tvs", "tv_l1"]

# The fidelity variable of each model's ADMM state (X for the TV family, L for NN).
FIDELITY_VARIABLE = {"tv": "x", "tvs": "x", "tv_l1": "x", "nn": "l"}
# TV-L1 (non-smooth fidelity) needs ≈ 10× more iterations at the default tol: where a test is
# not about accuracy, a looser tol keeps it fast.
FAST = {"tv_l1": {"tol": 1e-4}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(name: str, **params) -> torch.nn.Module:
    return build_model(name, **params)


def cube(seed: int, shape=(1, 4, 12, 12), sigma: float = 0.1) -> torch.Tensor:
    """A smooth, band-correlated cube with an edge, plus Gaussian noise (float64)."""
    rng = np.random.default_rng(seed)
    _, c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    spec = np.linspace(0.0, 1.0, c)[:, None, None]
    clean = 0.5 + 0.3 * np.sin(3 * xx + 2 * spec) * np.cos(2 * yy) + 0.2 * (xx > 0.5) * spec
    clean = np.broadcast_to(clean, shape)
    return torch.from_numpy(clean + sigma * rng.standard_normal(shape))


def weights(seed: int, like: torch.Tensor, spread: float = 0.5) -> torch.Tensor:
    """A random positive weight map of mean ≈ 1, away from 0."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.lognormal(0.0, spread, size=like.shape)).to(like.dtype)


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


# -- registry and parameters -----------------------------------------------------------------


def test_registry_builds_every_model_with_reference_defaults():
    # Names, classes and params of every registered model: test_model_contract.py.
    assert set(MODEL_NAMES) <= set(MODELS)  # target models (lrtv, e3dtv, …) register too
    tv = make("tv").params
    assert (tv.lam, tv.mu1, tv.mu2, tv.rho, tv.iterations) == (0.1, 0.1, 0.1, 1.05, 20)
    assert tv.boundary == "periodic"
    nn = make("nn")
    assert (nn.params.rho, nn.params.iterations) == (1.03, 15)
    hw = 64 * 64
    mu0 = 2.5 / math.sqrt(hw) / 255
    assert nn.mu0(hw) == pytest.approx(mu0)
    assert nn.lam(hw) == pytest.approx(mu0 / 0.1)  # λ = μ₀/0.1


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"'tvv' \(known: tv, tvs, nn, tv_l1"):
        build_model("tvv")
    with pytest.raises(ConfigError, match=r"model tv\.lamda: unknown key"):
        build_model("tv", lamda=0.2)
    with pytest.raises(ConfigError, match=r"model tv\.boundary"):
        build_model("tv", boundary="mirror")
    with pytest.raises(ConfigError, match=r"model nn\.max_iterations"):
        build_model("nn", min_iterations=50, max_iterations=10)


def test_input_validation():
    model = make("tv")
    y = torch.rand(1, 2, 4, 4)
    with pytest.raises(ValueError, match="B, C, H, W"):
        model.solve(y[0])
    with pytest.raises(ValueError, match="dtype"):
        model.solve(y, torch.ones_like(y, dtype=torch.float64))
    with pytest.raises(ValueError, match="broadcast"):
        model.solve(y, torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        model.solve(y, -torch.ones_like(y))
    per_band = torch.rand(1, 2, 1, 1) + 0.5  # a broadcastable weight is expanded
    assert torch.equal(model.solve(y, per_band).x, model.solve(y, per_band.expand_as(y)).x)


# -- finite differences and the exact linear solves -------------------------------------------

DIFFERENCES = [
    ("spatial", "periodic"),
    ("spatial", "neumann"),
    ("spectral", "periodic"),
    ("spectral", "neumann"),
]


def difference(kind: str, boundary: str) -> FiniteDifference:
    return spatial_difference(boundary) if kind == "spatial" else spectral_difference(boundary)


@pytest.mark.parametrize(("kind", "boundary"), DIFFERENCES)
def test_difference_adjoint(kind, boundary):
    D = difference(kind, boundary)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    u = torch.randn(D(x).shape, generator=gen, dtype=torch.float64)
    lhs, rhs = float((D(x) * u).sum()), float((x * D.adjoint(u)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


@pytest.mark.parametrize(("kind", "boundary"), DIFFERENCES)
@pytest.mark.parametrize(("mu1", "mu2"), [(0.1, 0.1), (0.3, 7.0), (5.0, 0.01)])
def test_linear_solve_is_exact(kind, boundary, mu1, mu2):
    D = difference(kind, boundary)
    gen = torch.Generator().manual_seed(1)
    b = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)  # odd and even sizes
    z = D.solve(b, mu1, mu2)
    residual = mu1 * z + mu2 * D.adjoint(D(z)) - b
    assert float(residual.abs().max()) <= 1e-10


def test_neumann_never_couples_first_and_last_sample():
    """The matrix of DᵀD along bands: periodic links band 0 and band C−1, Neumann does not."""
    c = 5
    for boundary, corner in [("periodic", -1.0), ("neumann", 0.0)]:
        D = spectral_difference(boundary)
        basis = torch.eye(c, dtype=torch.float64).reshape(c, c, 1, 1)
        gram = D.adjoint(D(basis))[:, :, 0, 0]
        assert float(gram[0, c - 1]) == corner
        assert torch.equal(gram, gram.T)
    assert float(spectral_difference("neumann")(basis)[:, 0, c - 1].abs().sum()) == 0.0


# -- singular value thresholding --------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5, 40), (2, 30, 7)])  # C < N and C > N
def test_svt_matches_svd_values_and_gradients(shape):
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(shape, generator=gen, dtype=torch.float64)
    sv = torch.linalg.svdvals(m).flatten().sort().values
    k = sv.numel() // 2
    tau = float(sv[k - 1] + sv[k]) / 2  # half the singular values survive; none at the kink
    out = svt(m, tau)
    ref = svt_reference(m, tau)
    assert float((out - ref).abs().max()) <= 1e-12
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    a = m.clone().requires_grad_(True)
    b = m.clone().requires_grad_(True)
    (grad_ours,) = torch.autograd.grad((svt(a, tau) * g).sum(), a)
    (grad_svd,) = torch.autograd.grad((svt_reference(b, tau) * g).sum(), b)
    assert float((grad_ours - grad_svd).abs().max()) <= 1e-10


def test_svt_gradcheck():
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(2, 4, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: svt(t, 1.3), (m,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_svt_float32_is_accurate():
    """The Gram matrix is formed in float64, so float32 loses nothing to squaring."""
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(1, 31, 256, generator=gen, dtype=torch.float64)
    m[:, :, :] *= torch.logspace(0, -5, 31, dtype=torch.float64)[:, None]  # σ over 5 decades
    tau = 1e-3
    ref = svt_reference(m, tau)
    out = svt(m.float(), tau).double()
    assert float((out - ref).norm() / ref.norm()) <= 1e-6


def rank_deficient_matrices() -> list[torch.Tensor]:
    flat = torch.full((1, 31, 36), 0.7, dtype=torch.float64)  # rank 1, 30 zero σ
    q, _ = torch.linalg.qr(torch.randn(36, 6, dtype=torch.float64, generator=torch.Generator()))
    repeated = torch.cat([2.0 * q.T[:3], 0.5 * q.T[3:]])[None]  # σ = (2, 2, 2, .5, .5, .5)
    return [flat, repeated]


@pytest.mark.parametrize("index", [0, 1])
def test_svt_gradient_finite_at_repeated_and_zero_singular_values(index):
    m = rank_deficient_matrices()[index]
    tau = 0.3
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(m.shape, generator=gen, dtype=torch.float64)
    a = m.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((svt(a, tau) * g).sum(), a)
    assert bool(torch.isfinite(grad).all())
    b = m.clone().requires_grad_(True)
    (grad_svd,) = torch.autograd.grad((svt_reference(b, tau) * g).sum(), b)
    assert not bool(torch.isfinite(grad_svd).all())  # why svt does not differentiate the SVD
    # SVT is smooth there: the gradient is the derivative (central differences, 3 directions).
    for k in range(3):
        d = torch.randn(m.shape, generator=gen, dtype=torch.float64)
        eps = 1e-6
        fd = ((svt(m + eps * d, tau) - svt(m - eps * d, tau)) * g).sum() / (2 * eps)
        assert float((grad * d).sum()) == pytest.approx(float(fd), rel=1e-6, abs=1e-8), k


# -- models: fixed points, limits and stopping -------------------------------------------------


def zero_strength(name: str) -> dict:
    # NN's λ weighs the fidelity: its regularisation strength is 1/λ.
    return {"lam_factor": 1e6, "max_iterations": 2000} if name == "nn" else {"lam": 0.0}


def close_to_y(sol: Solution, y: torch.Tensor, tol: float) -> bool:
    """‖x − y‖ within what the stopping rule allows: the fidelity variable sits at y, and the
    output Z is within the relative primal residual (< tol) of it."""
    return rms(sol.x, y) <= 2 * tol * float(y.pow(2).mean().sqrt()) + 1e-8


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_infinite_weight_gives_y(name):
    y = cube(10)
    model = make(name)
    sol = model.solve(y, torch.full_like(y, 1e8), converge=True)
    assert bool(sol.converged.all())
    assert close_to_y(sol, y, model.params.tol)
    assert rms(model.solve(y).x, y) > 1e-3  # while w = 1 does smooth


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_regularisation_gives_y(name):
    y = cube(11)
    model = make(name, **zero_strength(name))
    sol = model.solve(y, weights(11, y), converge=True)
    assert bool(sol.converged.all())
    assert close_to_y(sol, y, model.params.tol)


@pytest.mark.parametrize("name", TV_FAMILY)
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_constant_image_is_a_fixed_point(name, boundary):
    y = torch.full((2, 3, 8, 10), 0.37, dtype=torch.float64)
    model = make(name, boundary=boundary)
    w = weights(12, y)
    for converge in (False, True):
        sol = model.solve(y, w, converge=converge)
        assert float((sol.x - y).abs().max()) <= 1e-12
    assert bool(sol.converged.all())
    assert sol.iterations == model.params.min_iterations


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_naive_relative_change_stop_halts_at_iteration_one(name):
    """From X = Z = Y and zero multipliers the first X-update returns Y: a stop on the relative
    change of X fires at iteration 1, far from the solution. Our residuals do not."""
    y = cube(13)
    w = weights(13, y)
    model = make(name)
    ctx, state0 = model.initial_state(y, w)
    state1 = model.step(ctx, state0, 0)
    var = FIDELITY_VARIABLE[name]
    change = float((state1[var] - state0[var]).norm() / state0[var].norm())
    assert change <= 1e-12  # the naive rule, tol = 1e-5, halts here
    first = make(name, min_iterations=1, max_iterations=1).solve(y, w, converge=True)
    assert first.iterations == 1
    assert not bool(first.converged.any())
    assert float(torch.maximum(first.primal_residual, first.dual_residual).min()) > 1e-3
    full = make(name, min_iterations=1, **FAST.get(name, {})).solve(y, w, converge=True)
    assert bool(full.converged.all()) and full.iterations > 20
    assert rms(model.output(ctx, state1), full.x) > 1e-3  # iteration 1 is not the solution


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_objective_settles_at_its_minimum(name):
    y = cube(14, (1, 3, 10, 10))
    w = weights(14, y)
    model = make(name)
    sol = model.solve(y, w, converge=True)
    final = float(sol.objective)
    # The same iterations one step at a time, recording the objective at every iterate.
    ctx, state = model.initial_state(y, w)
    trajectory = []
    for k in range(sol.iterations):
        state = model.step(ctx, state, k)
        trajectory.append(float(model.objective(model.output(ctx, state), y, w)))
    assert trajectory[-1] == pytest.approx(final, rel=1e-12)
    assert final < float(model.objective(y, y, w))
    assert final < trajectory[model.params.iterations - 1]  # better than the unrolled output
    assert final <= min(trajectory) + 1e-5 * abs(final)  # nothing on the way was better
    tail = np.array(trajectory[-max(10, sol.iterations // 10) :])
    assert np.abs(tail - final).max() <= 1e-4 * abs(final)  # settled
    # Convexity: no random perturbation of the converged x lowers the objective.
    gen = torch.Generator().manual_seed(14)
    for _ in range(5):
        d = torch.randn(y.shape, generator=gen, dtype=y.dtype)
        perturbed = float(model.objective(sol.x + 1e-3 * d / d.norm(), y, w))
        assert perturbed >= final - 1e-6 * abs(final)


# -- gradients with respect to the weight map (unrolled mode) ---------------------------------


def test_nn_gradient_finite_on_rank_deficient_cube():
    y = torch.full((1, 31, 8, 8), 0.5, dtype=torch.float64)  # rank 1: 30 zero singular values
    for dtype in (torch.float64, torch.float32):
        w = weights(31, y).to(dtype).requires_grad_(True)
        sol = make("nn").solve(y.to(dtype), w)
        (grad,) = torch.autograd.grad(sol.x.sum() + (sol.x**2).sum(), w)
        assert bool(torch.isfinite(sol.x).all()) and bool(torch.isfinite(grad).all())
        assert float(grad.abs().max()) > 0


# -- agreement with independent solvers --------------------------------------------------------


def np_diff(x: np.ndarray, axes: tuple[int, ...], boundary: str) -> np.ndarray:
    out = []
    for a in axes:
        if boundary == "periodic":
            out.append(np.roll(x, -1, a) - x)
        else:
            zero = np.zeros_like(np.take(x, [0], axis=a))
            out.append(np.concatenate([np.diff(x, axis=a), zero], axis=a))
    return np.stack(out)


def np_diff_adjoint(p: np.ndarray, axes: tuple[int, ...], boundary: str) -> np.ndarray:
    x = np.zeros(p.shape[1:])
    for k, a in enumerate(axes):
        u = p[k]
        if boundary == "periodic":
            x += np.roll(u, 1, a) - u
        else:
            v = np.take(u, range(u.shape[a] - 1), axis=a)
            zero = np.zeros_like(np.take(u, [0], axis=a))
            x += np.concatenate([zero, v], axis=a) - np.concatenate([v, zero], axis=a)
    return x


def tv_fista_dual(y, w, lam, axes, boundary, certificate=1e-6, max_iterations=20000):
    """min_x ½ Σ w (x − y)² + λ ‖Dx‖₁ by FISTA on the dual (Beck & Teboulle 2009):
    max_{|p| ≤ λ} ⟨Dᵀp, y⟩ − ½ ‖Dᵀp‖²_{W⁻¹}, x = y − W⁻¹ Dᵀp.

    The primal is min(w)-strongly convex, so ‖x − x*‖² ≤ 2 gap / min(w): iterate until that
    bound, as an RMS, is below ``certificate``. Returns x, the primal objective and the bound."""
    lipschitz = 4.0 * len(axes) / w.min()
    p = np.zeros((len(axes), *y.shape))
    q, t = p.copy(), 1.0
    for it in range(1, max_iterations + 1):
        x = y - np_diff_adjoint(q, axes, boundary) / w
        p_next = np.clip(q + np_diff(x, axes, boundary) / lipschitz, -lam, lam)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        q = p_next + (t - 1) / t_next * (p_next - p)
        p, t = p_next, t_next
        if it % 250 == 0:
            dtp = np_diff_adjoint(p, axes, boundary)
            x = y - dtp / w
            primal = 0.5 * (w * (x - y) ** 2).sum() + lam * np.abs(np_diff(x, axes, boundary)).sum()
            dual = (dtp * y).sum() - 0.5 * (dtp**2 / w).sum()
            bound = math.sqrt(2 * max(primal - dual, 0.0) / w.min() / y.size)
            if bound <= certificate:
                break
    return x, primal, bound


@pytest.mark.parametrize(
    ("name", "boundary", "weighted", "penalties"),
    [
        ("tv", "periodic", False, {}),
        ("tv", "neumann", False, {}),
        ("tv", "periodic", True, {}),
        ("tv", "neumann", True, {"mu1": 2.0, "mu2": 0.5, "rho": 1.0, "tol": 1e-6}),  # μ₁ ≠ μ₂
        ("tvs", "periodic", False, {}),
        ("tvs", "neumann", True, {}),
    ],
)
def test_tv_agrees_with_fista_on_the_dual(name, boundary, weighted, penalties):
    y = cube(40, (1, 3, 16, 16))
    w = weights(40, y, 0.3) if weighted else torch.ones_like(y)
    lam = 0.1
    axes = (-2, -1) if name == "tv" else (-3,)
    x_ref, p_ref, bound = tv_fista_dual(y[0].numpy(), w[0].numpy(), lam, axes, boundary)
    assert bound <= 1e-6  # the reference is certified to 1e-6 RMS by its duality gap
    sol = make(name, lam=lam, boundary=boundary, **penalties).solve(y, w, converge=True)
    assert bool(sol.converged.all())
    assert rms(sol.x[0], torch.from_numpy(x_ref)) <= 1e-4  # required: 1e-3
    assert float(sol.objective) == pytest.approx(p_ref, rel=1e-5)


def test_nn_agrees_with_closed_form_svt():
    """With w = 1 the NN minimiser is SVT_{1/λ}(255 Y)/255 (numpy SVD here)."""
    y = cube(41, (1, 6, 8, 8), sigma=0.2)
    model = make("nn", lam_factor=2.0)  # a visible threshold at this size
    sol = model.solve(y, converge=True)
    _, c, h, w = y.shape
    u, s, vt = np.linalg.svd(255.0 * y[0].reshape(c, h * w).numpy(), full_matrices=False)
    s_new = np.maximum(s - 1.0 / model.lam(h * w), 0.0)
    assert 0 < (s_new > 0).sum() < c  # the threshold matters
    x_ref = torch.from_numpy((u * s_new) @ vt / 255.0).reshape(y.shape)
    assert bool(sol.converged.all())
    assert rms(sol.x, x_ref) <= 1e-5
    assert float(sol.objective) == pytest.approx(float(model.objective(x_ref, y)), rel=1e-8)


# -- the unrolled reference iteration, re-derived independently ---------------------------------


@pytest.mark.parametrize(("mu1", "mu2"), [(0.1, 0.1), (0.3, 0.05)])
def test_unrolled_tv_is_the_documented_reference_iteration(mu1, mu2):
    """20 iterations of the reference's order (U, then Z, then X, then the multipliers; the
    authors' ``net.py``, ``HWTV``) written out with numpy FFTs (periodic)."""
    y = cube(50, (1, 2, 8, 6))
    w = weights(50, y)
    yn, wn = y[0].numpy(), w[0].numpy()
    lam = 0.1
    h, wd = yn.shape[1:]
    kv, kh = np.meshgrid(np.arange(h), np.arange(wd), indexing="ij")
    eig = 4 * np.sin(np.pi * kv / h) ** 2 + 4 * np.sin(np.pi * kh / wd) ** 2
    axes = (-2, -1)

    def soft(v, t):
        return np.sign(v) * np.maximum(np.abs(v) - t, 0)

    mu1_0, mu2_0 = mu1, mu2
    x, z = yn.copy(), yn.copy()
    u = np_diff(yn, axes, "periodic")
    l1, l2 = np.zeros_like(yn), np.zeros_like(u)
    for _ in range(20):
        u = soft(np_diff(z, axes, "periodic") + l2 / mu2, lam / mu2)
        rhs = mu1 * x + l1 + np_diff_adjoint(mu2 * u - l2, axes, "periodic")
        z = np.real(np.fft.ifft2(np.fft.fft2(rhs) / (mu1 + mu2 * eig)))
        x = (wn * yn + mu1 * z - l1) / (wn + mu1)
        l1 = l1 + mu1 * (x - z)
        l2 = l2 + mu2 * (np_diff(z, axes, "periodic") - u)
        mu1, mu2 = 1.05 * mu1, 1.05 * mu2
    out = make("tv", mu1=mu1_0, mu2=mu2_0).solve(y, w).x[0].numpy()
    assert np.abs(out - z).max() <= 1e-12


def test_unrolled_nn_is_the_documented_reference_iteration():
    """15 iterations of the reference's NN order (Z, then L, then the multiplier; the authors'
    ``net.py``, ``HWNUCLR``) written out with numpy SVDs."""
    y = cube(51, (1, 5, 6, 8))
    w = weights(51, y)
    c, hw = 5, 48
    ys = 255.0 * y[0].reshape(c, hw).numpy()
    ws = w[0].reshape(c, hw).numpy()
    mu = 2.5 / math.sqrt(hw) / 255
    lam = mu / 0.1
    low, z, m = ys.copy(), ys.copy(), np.zeros_like(ys)
    for _ in range(15):
        u, s, vt = np.linalg.svd(low + m / mu, full_matrices=False)
        z = (u * np.maximum(s - 1 / mu, 0)) @ vt
        low = (lam * ws * ys + mu * z - m) / (lam * ws + mu)
        m = m + mu * (low - z)
        mu *= 1.03
    out = make("nn").solve(y, w).x[0].reshape(c, hw).numpy()
    assert np.abs(out - z / 255.0).max() <= 1e-12
