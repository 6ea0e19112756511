"""Contracts every registered model keeps, driven by the registry: a model added to ``MODELS``
is checked here without a line of its own.

Each test is parametrised over ``list(MODELS)`` (the source models, ``source_models()``, where a
contract concerns the unrolled solve DLW trains through) and builds models with :func:`make`.
The contracts: consistent class facts (role, strength fields, unrolled cost); outputs and
solution fields of the input's shape and dtype, in both modes, with the final ADMM state;
``w = 1`` is the unweighted model; a batch gives each sample's own result; the unrolled solve is
differentiable in ``w``. Model-specific behaviour (reference iterations, agreement with
independent solvers, defaults) is tested in ``test_models.py`` and ``test_targets.py``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_targets import cube, weights

from pipeline.models import MODELS, Solution, build_model, models_with_role, source_models
from pipeline.models.base import ROLES, VariationalModel
from pipeline.models.strength import (
    reference_strengths,
    scaled_params,
    strength_fields,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = list(MODELS)
SOURCES = list(source_models())

# TV-L1 (non-smooth fidelity) needs ≈ 10× more iterations at the default tol: where a test is
# not about accuracy, a looser tol keeps it fast. No contract depends on the tolerance.
FAST = {"tv_l1": {"tol": 1e-4}}


def make(name: str, **params) -> VariationalModel:
    """The registry's model ``name``, with :data:`FAST` settings, then ``params``."""
    return build_model(name, **{**FAST.get(name, {}), **params})


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# -- class facts -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_class_facts_are_consistent(name):
    cls, params_cls = MODELS[name]
    assert cls.name == name and cls.Params is params_cls
    model = build_model(name)
    assert isinstance(model, cls) and model.params == params_cls()
    assert cls.role in ROLES
    assert cls.unrolled_cost is None or (
        isinstance(cls.unrolled_cost, float) and cls.unrolled_cost > 0
    )
    # The strength: distinct float fields of the params, scaled as strength_inverse says.
    fields = {f.name for f in dataclasses.fields(params_cls)}
    assert cls.strength_fields and set(cls.strength_fields) <= fields
    assert len(set(cls.strength_fields)) == len(cls.strength_fields)
    assert isinstance(cls.strength_inverse, bool)
    assert strength_fields(name) == (cls.strength_fields, cls.strength_inverse)
    default = params_cls()
    assert all(isinstance(getattr(default, f), float) for f in cls.strength_fields)
    factor = 0.5 if cls.strength_inverse else 2.0  # ×2 the strength: ÷2 a fidelity weight
    scaled = scaled_params(name, 2.0)
    expect = {f: getattr(default, f) * factor for f in cls.strength_fields}
    # the ADMM penalties follow as √m: distinct float fields, none of them a strength
    assert set(cls.penalty_fields) <= fields - set(cls.strength_fields)
    expect.update({f: getattr(default, f) * math.sqrt(2.0) for f in cls.penalty_fields})
    assert scaled == expect
    assert scaled_params(name, 1.0) == {
        f: getattr(default, f) for f in (*cls.strength_fields, *cls.penalty_fields)
    }
    assert build_model(name, **scaled).params != default
    assert reference_strengths(name) == {f: getattr(default, f) for f in cls.strength_fields}


def test_registry_lists_follow_the_class_facts():
    assert source_models() == ("tv", "tvs", "nn", "tv_l1")
    costs = {name: MODELS[name][0].unrolled_cost for name in source_models()}
    assert costs == {"tv": 1.0, "tvs": 1.1, "nn": 0.45, "tv_l1": 1.0}
    assert models_with_role("target") == ("tv", "tvs", "nn", "lrtv", "e3dtv")
    assert models_with_role("peer") == ("tv_l1",)
    assert sorted(models_with_role("target") + models_with_role("peer")) == sorted(MODELS)
    with pytest.raises(ValueError, match=r"unknown role 'baseline' \(known: target, peer\)"):
        models_with_role("baseline")
    with pytest.raises(ValueError, match=r"unknown target 'foo' \(known: tv, tvs, nn, tv_l1"):
        strength_fields("foo")
    with pytest.raises(ValueError, match=r"unknown target 'foo'"):
        scaled_params("foo", 2.0)


# -- solutions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("converge", [False, True])
def test_solution_has_the_input_shape_and_dtype(name, converge):
    """A (2, 8, 6, 7) float32 cube: ``x`` and the per-sample fields, the iteration counts
    (unrolled: the reference's; converged: 30 with min = max = 30), and the final state, from
    which ``output`` gives ``x`` (in the dtype the iterations ran in)."""
    y = cube(24, (2, 8, 6, 7)).float()
    model = make(name, min_iterations=30, max_iterations=30)
    sol = model.solve(y, converge=converge)
    assert isinstance(sol, Solution)
    assert sol.x.shape == y.shape and sol.x.dtype == torch.float32
    for t in (sol.primal_residual, sol.dual_residual, sol.objective, sol.converged):
        assert t.shape == (2,)
    assert sol.converged.dtype == torch.bool
    assert sol.sample_iterations.shape == (2,) and sol.sample_iterations.dtype == torch.int64
    assert sol.iterations == (30 if converge else model.params.iterations)
    assert torch.equal(sol.sample_iterations, torch.full((2,), sol.iterations))
    ctx, _ = model.initial_state(y)
    out = model.output(ctx, sol.state)
    assert out.dtype == (model.converge_dtype if converge else torch.float32)
    assert torch.equal(out.to(torch.float32), sol.x)
    assert torch.equal(model(y, converge=converge), sol.x)  # forward is solve(...).x
    if converge:  # float32 input is computed in float64: it agrees with float64 input
        sol64 = model.solve(y.double(), converge=True)
        assert sol64.x.dtype == torch.float64
        assert max_abs(sol.x.double(), sol64.x) <= 1e-6


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("converge", [False, True])
def test_unit_weight_is_the_unweighted_model(name, converge):
    y = cube(25, (1, 8, 8, 8))
    model = make(name)
    a = model.solve(y, torch.ones_like(y), converge=converge)
    b = model.solve(y, converge=converge)
    assert max_abs(a.x, b.x) <= 1e-6
    assert a.iterations == b.iterations


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("converge", [False, True])
def test_batch_equals_per_sample(name, converge):
    ys = [cube(20, sigma=0.05), cube(21, sigma=0.15), cube(22, sigma=0.0)]  # one noise-free
    ws = [weights(20, ys[0]), weights(21, ys[1], 1.0), torch.ones_like(ys[2])]
    model = make(name)
    batch = model.solve(torch.cat(ys), torch.cat(ws), converge=converge)
    singles = [model.solve(y, w, converge=converge) for y, w in zip(ys, ws, strict=True)]
    for b, single in enumerate(singles):
        assert max_abs(batch.x[b], single.x[0]) <= 1e-6
        assert int(batch.sample_iterations[b]) == single.iterations
        assert bool(batch.converged[b]) == bool(single.converged[0])
        assert float(batch.objective[b]) == pytest.approx(float(single.objective[0]), rel=1e-9)
    if converge:  # the samples did stop at different iterations
        assert len({s.iterations for s in singles}) > 1
        assert batch.iterations == max(s.iterations for s in singles)


# -- gradients with respect to the weight map (unrolled mode) ----------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_weight_gradient_is_finite_and_nonzero(name):
    """The unrolled iterations are differentiable in w: a finite gradient, even where w = 0."""
    y = cube(23, (2, 4, 8, 8)).float()
    w = torch.ones_like(y)
    w[:, 0, :2] = 0.0
    w.requires_grad_(True)
    (grad,) = torch.autograd.grad((make(name).solve(y, w).x ** 2).sum(), w)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


@pytest.mark.parametrize("name", SOURCES)
def test_weight_gradient_matches_central_differences(name):
    """∂⟨g, x(w)⟩/∂w by autograd through the unrolled ADMM vs central differences of every
    coordinate (all 2 × 144 perturbed solves in one batch), float64, 1 × 4 × 6 × 6: what the
    bilevel training of a source model backpropagates."""
    y = cube(30, (1, 4, 6, 6))
    w0 = weights(30, y, 0.3)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(30), dtype=y.dtype)
    model = build_model(name)
    w = w0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((model.solve(y, w).x * g).sum(), w)
    assert bool(torch.isfinite(grad).all())
    n = y.numel()
    eps = 1e-6
    basis = torch.eye(n, dtype=y.dtype).reshape(n, *y.shape[1:])
    wb = torch.cat([w0 + eps * basis, w0 - eps * basis])
    with torch.no_grad():
        xb = model.solve(y.expand(2 * n, -1, -1, -1), wb).x
    f = (xb * g).flatten(1).sum(1)
    fd = ((f[:n] - f[n:]) / (2 * eps)).reshape(y.shape)
    assert float(fd.norm()) > 0
    assert float((grad - fd).norm() / fd.norm()) <= 1e-4
