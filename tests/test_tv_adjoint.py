"""The hand-written adjoint of the unrolled TV-family solve (pipeline/models/tv_adjoint.py):
the same iterates as the autograd path, bit for bit; the same gradient in w up to rounding;
finite differences; the in-place differences equal to the allocating ones."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.base import ADMMModel
from pipeline.models.differences import FiniteDifference
from pipeline.models.registry import build_model

CASES = [(name, b) for name in ("tv", "tvs") for b in ("periodic", "neumann")]


def _data(shape=(2, 5, 8, 9), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=g, dtype=dtype)
    w = 0.2 + 2 * torch.rand(shape, generator=g, dtype=dtype)
    return y, w, torch.rand(shape, generator=g, dtype=dtype)


def _autograd_solve(model, y, w):
    """The unrolled solve as every model runs it: autograd records each iteration."""
    ctx, state, _, _ = ADMMModel._unrolled_iterations(model, y, w)
    return model._output(ctx, state)


@pytest.mark.parametrize("dims", [(-2, -1), (-3,), (-3, -2, -1)])
@pytest.mark.parametrize("bands", [4, 1])
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_in_place_differences_are_bit_identical(dims, boundary, bands):
    D = FiniteDifference(dims, boundary)
    x, _, _ = _data((2, bands, 6, 7), dtype=torch.float32)
    u = torch.randn(2, len(dims), bands, 6, 7)
    assert torch.equal(D.into(x, torch.full_like(u, float("nan"))), D(x))
    out, scratch = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    assert torch.equal(D.adjoint_into(u, out, scratch), D.adjoint(u))


@pytest.mark.parametrize(("name", "boundary"), CASES)
def test_adjoint_iterates_and_gradient_equal_autograd(name, boundary):
    model = build_model(name, boundary=boundary)
    y, w0, clean = _data()
    w = w0.clone().requires_grad_()
    sol = model.solve(y, w)
    assert sol.x.grad_fn is not None and "UnrolledTVAdjoint" in type(sol.x.grad_fn).__name__
    ((sol.x - clean) ** 2).sum().backward()

    w_ref = w0.clone().requires_grad_()
    x_ref = _autograd_solve(model, y, w_ref)
    ((x_ref - clean) ** 2).sum().backward()

    assert torch.equal(sol.x.detach(), x_ref.detach())  # the same operations, in place
    rel = (w.grad - w_ref.grad).abs().max() / w_ref.grad.abs().max()
    assert rel < 1e-12, rel
    # What the solve reports is that of the autograd path too.
    with torch.no_grad():
        ref = model.solve(y, w0)
    for field in ("primal_residual", "dual_residual", "objective"):
        assert torch.equal(getattr(sol, field), getattr(ref, field)), field


@pytest.mark.parametrize(("name", "boundary"), CASES)
def test_adjoint_gradient_matches_finite_differences(name, boundary):
    model = build_model(name, boundary=boundary, iterations=6)
    y, w0, clean = _data((1, 3, 5, 6), seed=1)
    direction = torch.randn(w0.shape, generator=torch.Generator().manual_seed(2), dtype=w0.dtype)

    def loss(w):
        return ((model.solve(y, w).x - clean) ** 2).sum()

    w = w0.clone().requires_grad_()
    loss(w).backward()
    analytic = float((w.grad * direction).sum())
    eps = 1e-6
    with torch.no_grad():
        numeric = float(loss(w0 + eps * direction) - loss(w0 - eps * direction)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-10)


def test_broadcast_weights_get_their_own_shape_of_gradient():
    model = build_model("tv")
    y, w0, clean = _data()
    w0 = w0[:, :1]  # one weight per pixel, shared by the bands
    grads = []
    for adjoint in (True, False):
        w = w0.clone().requires_grad_()
        x = model.solve(y, w).x if adjoint else _autograd_solve(model, y, w.expand_as(y))
        ((x - clean) ** 2).sum().backward()
        grads.append(w.grad)
    assert grads[0].shape == w0.shape
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def test_autograd_path_where_the_adjoint_does_not_apply():
    y, w0, _ = _data()
    # A gradient in y is wanted: the adjoint covers w only.
    y = y.clone().requires_grad_()
    x = build_model("tv").solve(y, w0.clone().requires_grad_()).x
    assert "UnrolledTVAdjoint" not in type(x.grad_fn).__name__
    x.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    # TV-L1 has its own X-update.
    x = build_model("tv_l1").solve(y.detach(), w0.clone().requires_grad_()).x
    assert "UnrolledTVAdjoint" not in type(x.grad_fn).__name__


def test_adjoint_keeps_less_than_autograd():
    """What the backward pass keeps: X and the shrinkage's support per iteration, against the
    inputs of every recorded operation."""
    model = build_model("tv")
    y, w0, _ = _data((2, 6, 16, 16), dtype=torch.float32)
    sizes = []
    for adjoint in (True, False):
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        w = w0.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            x = model.solve(y, w).x if adjoint else _autograd_solve(model, y, w)
        sizes.append(sum(saved))
        del x
    assert sizes[0] < 0.5 * sizes[1], sizes


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_an_axis_of_one_sample_and_a_single_iteration(boundary):
    """Images one pixel wide (D_h = 0 there) with TV: the adjoint path agrees with autograd;
    one iteration: Z₁ does not depend on w, and the gradient is exactly zero."""
    model = build_model("tv", boundary=boundary)
    y, w0, clean = _data((2, 3, 6, 1))
    w = w0.clone().requires_grad_()
    sol = model.solve(y, w)
    ((sol.x - clean) ** 2).sum().backward()
    w_ref = w0.clone().requires_grad_()
    x_ref = _autograd_solve(model, y, w_ref)
    ((x_ref - clean) ** 2).sum().backward()
    assert torch.equal(sol.x.detach(), x_ref.detach())
    assert w_ref.grad.abs().max() > 0
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-12, atol=1e-14)

    one = build_model("tv", boundary=boundary, iterations=1)
    w = w0.clone().requires_grad_()
    ((one.solve(y, w).x - clean) ** 2).sum().backward()
    assert not _autograd_solve(one, y, w0.clone().requires_grad_()).requires_grad
    assert torch.equal(w.grad, torch.zeros_like(w0))
