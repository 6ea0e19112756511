"""Regularising gradients (``pipeline.methods.rg``): the implicit gradient of the fixed point
against unrolled GD and finite differences, the contraction bound with a certified Lipschitz
constant, the power iteration against the SVD of the explicit Jacobian, memory flat in the
number of forward iterations, the closed form without regulariser, and the restorer on every
operator kind."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_method_contract as contract

from pipeline.degrade.operators import Blur, Identity, Inpainting
from pipeline.degrade.tasks import exact_gaussian_kernel
from pipeline.methods.rg import RG
from pipeline.methods.rg.net import SCORE_SCALE, RGNet
from pipeline.methods.rg.solver import (
    Group,
    Problem,
    bound_value,
    deq_solver,
    gd_map,
    lipschitz,
    solve,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_net(scale: float, lam: float, tau: float = 1.0, seed: int = 0) -> RGNet:
    """A float64 net of width 3, depth 3, its weights scaled by ``scale`` (contractive G)."""
    torch.manual_seed(seed)
    net = RGNet(width=3, depth=3, lam=lam, tau=tau).double()
    with torch.no_grad():
        for conv in net.grad.convs:
            conv.weight.mul_(scale)
    return net


def tiny_problem(rng: np.random.Generator, size: int = 6):
    """Two single-band samples, float64: denoising and a mild circular blur (5 × 5 Gaussian of
    0.4 px: AᵀA is well conditioned, so T contracts for a small enough λ G)."""
    clean = torch.from_numpy(rng.uniform(0.2, 0.8, (2, 1, size, size)))
    blur = Blur(torch.from_numpy(exact_gaussian_kernel(0.4)))
    noise = 0.05 * torch.from_numpy(rng.standard_normal(clean.shape))
    y = torch.cat([clean[:1], blur.A(clean[1:])]) + noise
    problem = Problem([Group(Identity(), y[:1]), Group(blur, y[1:])])
    return problem, clean, y.clone()


# --- the implicit gradient ----------------------------------------------------------------------


def test_implicit_gradient_matches_unrolled_gd_and_finite_differences():
    rng = np.random.default_rng(0)
    problem, clean, x0 = tiny_problem(rng)  # 6 × 6 × 2 (two bands as samples)
    net = tiny_net(0.6, lam=0.01, tau=0.8)
    params = {
        "log_lam": net.log_lam,
        "w0": net.grad.convs[0].weight,
        "w1": net.grad.convs[1].weight,
        "b2": net.grad.convs[2].bias,
    }

    # Implicit: torchdeq, Anderson forward, IFT backward (the trainer's deq_solver).
    fixed_point = deq_solver(max_iter=300, tol=1e-14, backward_max_iter=300, backward_tol=1e-14)
    x_star, _ = fixed_point(gd_map(net, problem), x0)
    loss = ((x_star - clean) ** 2).sum()
    full = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    # The checked entries: the largest of each tensor (a dead ReLU channel has none).
    entries = [
        (name, np.unravel_index(int(g.abs().argmax()), g.shape) if g.ndim else ())
        for name, g in full.items()
    ]

    def picked(grads: dict[str, torch.Tensor]) -> np.ndarray:
        return np.array([float(grads[name][index]) for name, index in entries])

    implicit = picked(full)

    # Unrolled: plain GD to convergence with the whole graph.
    x = x0
    T = gd_map(net, problem)
    for _ in range(400):
        x = T(x)
    assert float((T(x) - x).detach().abs().max()) < 1e-14
    loss = ((x - clean) ** 2).sum()
    unrolled = picked(
        dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    )

    # Central finite differences of the converged loss.
    def value() -> float:
        with torch.no_grad():
            xs, _ = solve(gd_map(net, problem), x0, max_iter=500, tol=1e-15)
            return float(((xs - clean) ** 2).sum())

    eps = 1e-6
    fd = []
    for name, index in entries:
        p = params[name]
        with torch.no_grad():
            p[index] += eps
            up = value()
            p[index] -= 2 * eps
            down = value()
            p[index] += eps
        fd.append((up - down) / (2 * eps))
    fd = np.array(fd)
    assert np.all(np.abs(implicit) > 1e-6)  # not a trivially zero gradient
    np.testing.assert_allclose(implicit, unrolled, rtol=1e-4)
    np.testing.assert_allclose(implicit, fd, rtol=1e-4)


# --- the bound and the Lipschitz estimate -------------------------------------------------------


def layer_norm(conv: torch.nn.Conv2d, size: int) -> float:
    """‖C‖₂ of a convolution (no bias) on size × size images: its explicit matrix's largest
    singular value."""

    def lin(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(z, conv.weight, None, padding=1)

    z = torch.zeros(1, conv.in_channels, size, size, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lin, z).reshape(-1, z.numel())
    return float(torch.linalg.svdvals(jac)[0])


def test_contraction_bound_holds_with_a_certified_lipschitz_constant():
    rng = np.random.default_rng(1)
    size = 8
    # Denoising and a mild circular blur, τ = 0.5: ‖I − τAᵀA‖ = 0.5 and 1 − τ min|k̂|² ≈ 0.75.
    kernel = torch.from_numpy(exact_gaussian_kernel(0.4))  # 5 × 5
    net = tiny_net(0.5, lam=1.0, tau=0.5, seed=1)
    lip_g = np.prod([layer_norm(c, size) for c in net.grad.convs]) / SCORE_SCALE  # ReLU: 1-Lip
    zero = torch.zeros(1, 1, size, size, dtype=torch.float64)
    data = Problem([Group(Identity(), zero), Group(Blur(kernel), zero)])
    # The data part's norm, per sample, from the explicit matrix of v ↦ v − τ AᵀA v.
    z = torch.zeros(2, 1, size, size, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: v - 0.5 * data.normal(v), z)
    jac = jac.reshape(2, size * size, 2, size * size)
    lip_data = max(float(torch.linalg.svdvals(jac[b, :, b])[0]) for b in range(2))
    with torch.no_grad():  # λ so that the certified L = 0.9
        net.log_lam.fill_(np.log((0.9 - lip_data) / (0.5 * lip_g)))
    L = lip_data + 0.5 * float(net.lam.detach()) * lip_g
    assert pytest.approx(0.9) == L
    assert 0.7 < lip_data < 0.8

    ratios = []
    for _ in range(5):
        clean = torch.from_numpy(rng.uniform(0, 1, (2, 1, size, size)))
        y = clean + 0.1 * torch.from_numpy(rng.standard_normal(clean.shape))
        y[1:] = Blur(kernel).A(clean[1:]) + 0.1 * torch.from_numpy(
            rng.standard_normal((1, 1, size, size))
        )
        problem = Problem([Group(Identity(), y[:1]), Group(Blur(kernel), y[1:])])
        T = gd_map(net, problem)
        with torch.no_grad():
            x_star, info = solve(T, y.clone(), max_iter=300, tol=1e-14)
            assert bool(info["converged"].all())
            err = (x_star - clean).flatten(1).norm(dim=1)
            bound = (T(clean) - clean).flatten(1).norm(dim=1) / (1 - L)
        assert bool((err <= bound).all()), (err, bound)
        ratios.extend((err / bound).tolist())
        # The local estimate never exceeds the certified global constant.
        local = lipschitz(net, problem, clean, torch.ones_like(clean), 50)
        assert bool((local <= L + 1e-9).all())
    assert max(ratios) > 0.05  # not a vacuous bound on this problem
    # bound_value: r / (1 − min(L, cap)).
    r, Ls = torch.tensor([0.3, 0.3]), torch.tensor([0.5, 0.99])
    torch.testing.assert_close(bound_value(r, Ls, 0.95), torch.tensor([0.6, 6.0]))


def test_power_iteration_matches_the_largest_singular_value_of_the_jacobian():
    rng = np.random.default_rng(2)
    problem, _, _ = tiny_problem(rng, size=5)
    net = tiny_net(1.0, lam=0.02, tau=0.9, seed=2)
    x = torch.from_numpy(rng.uniform(0, 1, (2, 1, 5, 5)))
    T = gd_map(net, problem)
    jac = torch.autograd.functional.jacobian(T, x).reshape(2, 25, 2, 25)
    exact = torch.tensor([float(torch.linalg.svdvals(jac[b, :, b])[0]) for b in range(2)])
    assert float(jac[0, :, 1].abs().max()) == 0  # samples are independent problems
    v0 = torch.from_numpy(rng.standard_normal(x.shape))
    est = lipschitz(net, problem, x, v0, 300)
    np.testing.assert_allclose(est.numpy(), exact.numpy(), rtol=1e-3)
    diff = lipschitz(net, problem, x, v0, 300, differentiable=True)
    np.testing.assert_allclose(diff.detach().numpy(), exact.numpy(), rtol=1e-3)
    assert diff.requires_grad  # the last half-step carries the graph to φ and λ
    few = lipschitz(net, problem, x, v0, 3)
    assert bool((few <= exact + 1e-9).all())  # a power iteration never overestimates


# --- memory of a deqgd step ---------------------------------------------------------------------


def saved_bytes(step) -> int:
    """Bytes of every tensor autograd saves for backward while ``step()`` runs (forward and
    backward; the sum bounds the graph's peak memory): what grows with an unrolled graph."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total[0]


def test_deqgd_step_memory_is_flat_in_the_forward_iterations():
    rng = np.random.default_rng(3)
    problem, clean, x0 = tiny_problem(rng, size=12)
    net = tiny_net(1.0, lam=0.01, tau=1.0).float()
    problem = Problem([Group(g.op, g.y.float()) for g in problem.groups])
    clean, x0 = clean.float(), x0.float()

    def deq_step(iters: int):
        # tol 0: every one of the `iters` Anderson steps (and as many backward steps) runs.
        fixed_point = deq_solver(max_iter=iters, tol=1e-30, backward_max_iter=iters,
                                 backward_tol=1e-30)  # fmt: skip

        def step():
            net.zero_grad()
            T, calls = gd_map(net, problem), [0]

            def counted(x: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return T(x)

            x_star, _ = fixed_point(counted, x0)
            ((x_star - clean) ** 2).mean().backward()
            assert calls[0] >= iters  # every forward step ran (tol 0), + T(x*) with its graph

        return step

    def unrolled_step(iters: int):
        def step():
            net.zero_grad()
            x, T = x0, gd_map(net, problem)
            for _ in range(iters):
                x = T(x)
            ((x - clean) ** 2).mean().backward()

        return step

    deq = [saved_bytes(deq_step(k)) for k in (20, 200)]
    unrolled = [saved_bytes(unrolled_step(k)) for k in (20, 200)]
    assert deq[0] > 0
    assert deq[1] / deq[0] <= 1.2, deq
    assert unrolled[1] / unrolled[0] > 5, unrolled  # the measure does see a growing graph
    assert deq[1] < unrolled[0]


# --- the closed form without regulariser, and the restorer -------------------------------------


def zero_g(net: RGNet) -> RGNet:
    with torch.no_grad():
        net.grad.convs[-1].weight.zero_()
        net.grad.convs[-1].bias.zero_()
    return net


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_without_regulariser_gd_converges_to_least_squares(tau):
    rng = np.random.default_rng(4)
    net = zero_g(RGNet(width=4, depth=3, tau=tau)).eval()
    y = rng.uniform(0, 1, (3, 10, 10)).astype(np.float32)
    w = rng.uniform(0.2, 3.0, y.shape).astype(np.float32)
    for weights in (None, w):
        x, diag = RG.restore(net, y, weights, 1.0)  # denoising: x* = y
        np.testing.assert_allclose(x, y, atol=2e-5)
        assert diag["converged"]
    # Inpainting: observed pixels → y, missing pixels keep the start (no gradient reaches them).
    mask = torch.from_numpy((rng.random((3, 10, 10)) > 0.5).astype(np.float64))
    A = Inpainting(mask)
    ym = (y * mask.numpy()).astype(np.float32)
    from pipeline.evaluate.operator_baselines import fill

    x, _ = RG.restore(net, ym, None, 1.0, A=A)
    np.testing.assert_allclose(x, fill(ym, A), atol=2e-5)


def test_anderson_and_plain_iteration_reach_the_same_fixed_point():
    rng = np.random.default_rng(5)
    problem, _, x0 = tiny_problem(rng, size=8)
    net = tiny_net(0.8, lam=0.01, tau=1.0, seed=5)
    T = gd_map(net, problem)
    xa, ia = solve(T, x0, solver="anderson", max_iter=200, tol=1e-12)
    xp, ip = solve(T, x0, solver="fixed_point_iter", max_iter=2000, tol=1e-12)
    torch.testing.assert_close(xa, xp, atol=1e-10, rtol=0)
    assert bool(ia["converged"].all()) and bool(ip["converged"].all())
    # (Which is faster depends on the problem: benchmarks/rg.py measures it on the tasks.)


@pytest.mark.parametrize("kind", ["identity", "blur", "downsample", "inpaint"])
def test_restore_on_every_operator(kind):
    torch.manual_seed(0)
    net = RGNet(width=4, depth=3, max_iter=20).eval().requires_grad_(False)
    rng = np.random.default_rng(6)
    A = contract.operator_for(kind)  # 16 × 16, 8 bands
    clean = rng.uniform(0.2, 0.8, (8, 16, 16))
    with torch.no_grad():
        y = clean if A is None else A.A(torch.from_numpy(clean)).numpy()
    y = (y + 0.02 * rng.standard_normal(y.shape)).astype(np.float32)
    x, diag = RG.restore(net, y, None, 1.0, A=A)
    assert x.shape == clean.shape and x.dtype == np.float32 and np.isfinite(x).all()
    assert 1 <= diag["iterations"] <= 20 and diag["time"] > 0
    assert set(diag) >= {"iterations", "converged", "primal_residual", "time"}
    ones, _ = RG.restore(net, y, np.ones_like(y), 1.0, A=A)
    np.testing.assert_allclose(ones, x, atol=1e-6)  # w = 1 is the unweighted solve
    w = rng.uniform(0.5, 2.0, y.shape).astype(np.float32)
    xw, _ = RG.restore(net, y, w, 2.0, A=A)
    assert xw.shape == clean.shape and np.isfinite(xw).all() and not np.allclose(xw, x)
    bad = y.copy()
    bad[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        RG.restore(net, bad, None, 1.0, A=A)
    with pytest.raises(ValueError, match="weights of shape"):
        RG.restore(net, y, np.ones((1, *y.shape[1:]), np.float32), 1.0, A=A)


def test_a_saved_part_restores_as_it_was_built(tmp_path):
    from pipeline.checkpoint import save_checkpoint

    net = RGNet(width=5, depth=4, lam=0.003, tau=0.7, max_iter=17, tol=2e-3, anderson_m=4)
    save_checkpoint(tmp_path / "p.pt", net.state_dict())
    part = RG.load(tmp_path / "p.pt")
    assert (part.grad.width, part.grad.depth) == (5, 4)
    assert float(part.lam) == pytest.approx(0.003) and float(part.tau) == pytest.approx(0.7)
    assert part.solve_settings == {"solver": "anderson", "max_iter": 17, "tol": 2e-3, "m": 4}
    assert not any(p.requires_grad for p in part.parameters())
