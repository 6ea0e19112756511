r"""Variational models with a weighted data fidelity, and the ADMM driver they share.

A model is a denoiser (DLW, Rui et al., arXiv 2301.06081, eq. (2.1))

.. math:: x(w) = \operatorname*{argmin}_x\ \tfrac12 \sum_i w_i (y_i - x_i)^2 + R(x),

with a per-pixel weight map :math:`w \ge 0` (the output of DLW's weight network; :math:`w = 1` is
the unweighted model). :meth:`VariationalModel.solve` runs ADMM (Boyd, Parikh, Chu, Peleato,
Eckstein, "Distributed optimization and statistical learning via the alternating direction
method of multipliers", FnT ML 3(1), 2011) in one of two modes:

``converge=False`` (*unrolled*, the DLW reference)
    the reference's fixed number of iterations, penalty schedule
    :math:`\mu_k = \min(\mu_0 \rho^k, \mu_{\max})` (the cap is far above the reference's
    20 iterations) and, for the DLW source models, the reference's own order of the updates
    (:meth:`ADMMModel._unrolled_step`; the authors' ``net.py``, github.com/xyrui/DLWnet),
    differentiable in :math:`w` (and :math:`y`) by autograd — what the bilevel training
    backpropagates through. It is *not* the minimiser (20 TV iterations stop ≈ 1e-2 RMS short
    of it), so the order of the updates changes both the output and its gradient in :math:`w`.
``converge=True``
    the same iteration, computed in :attr:`ADMMModel.converge_dtype` (float64 unless a caller
    sets float32; returned in the input dtype), with
    :math:`\mu_k = \min(\mu_0\rho^k, \mu_{\max})` (a growing, then constant penalty: ADMM with a
    bounded, eventually constant penalty converges; He, Yang, Wang, JOTA 106, 2000), until the
    relative primal *and* dual residuals are below ``tol`` after at least ``min_iterations``, or
    ``max_iterations`` (the rule is evaluated every :data:`CHECK_EVERY` iterations from
    ``min_iterations`` on). A sample that meets the rule is frozen while the others go on, so a
    batch gives exactly the per-sample results. :func:`torch.no_grad` is not forced: callers
    wrap it.

Residuals (Boyd et al. §3.3), per sample, for ADMM on :math:`\min f(a) + g(z)` s.t.
:math:`Aa + Bz = 0` with multipliers :math:`\Lambda` and penalties :math:`\mu` (one per
constraint block):

.. math:: r = A a + B z,\quad s = \mu A^\top B (z_k - z_{k-1}),\qquad
          \text{primal} = \frac{\|r\|}{\max(\|Aa\|, \|Bz\|, \delta\sqrt n)},\quad
          \text{dual} = \frac{\|s\|}{\max(\|A^\top \Lambda\|, \delta\sqrt n)},

norms Frobenius over the sample, :math:`n` its number of pixels × bands, all in the [0, 1] image
scale (multipliers in units of :math:`w \cdot x`), and the floor :math:`\delta = 10^{-6}` (an RMS
of 1e-6) so that an exactly solved problem (a flat image, no regularisation), whose residuals
and multipliers are both pure rounding noise, reports tiny residuals instead of noise / noise.
Each model documents its :math:`a, z, A, B`.

Operator-aware models (:attr:`VariationalModel.operators` beyond ``identity``: TV, and TVS for
inpainting) also solve
:math:`\min_x \tfrac12 \sum_i w_i (y - Ax)_i^2 + R(x)` for a linear forward operator
:math:`A` of :mod:`pipeline.degrade.operators` (``solve(y, w, converge=True, A=A)``;
:mod:`pipeline.models.tv`); ``A=None`` or ``Identity()`` is the denoising model above, run by
the same code.

A naive stop on the relative change of the fidelity variable, :math:`\|x_k - x_{k-1}\| /
\|x_{k-1}\| < \mathrm{tol}`, would halt every model here at iteration 1: from the reference
start (:math:`x = z = y`, zero multipliers) the first :math:`x`-update returns :math:`y` again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pipeline.degrade.operators import Identity, LinearOperator, operator_kind
from pipeline.schema import require

__all__ = [
    "RESIDUAL_FLOOR",
    "ROLES",
    "ADMMModel",
    "Solution",
    "State",
    "VariationalModel",
    "check_admm_params",
    "norm",
    "penalty",
    "relative",
    "stacked_norm",
]

RESIDUAL_FLOOR = 1e-6

# What the benchmark does with a model (VariationalModel.role).
ROLES: tuple[str, ...] = ("target", "peer")

State = dict[str, Tensor]


@dataclass
class Solution:
    """What :meth:`VariationalModel.solve` returns; per-sample tensors are ``(B,)``."""

    x: Tensor  # (B, C, H, W) the output (the splitting variable Z, as the reference), full grid
    iterations: int  # iterations run (the largest over the batch)
    primal_residual: Tensor  # (B,) relative primal residual at the end
    dual_residual: Tensor  # (B,) relative dual residual at the end
    objective: Tensor  # (B,) objective value at x
    converged: Tensor  # (B,) bool: both residuals < tol (after min_iterations if converge=True)
    sample_iterations: Tensor  # (B,) iterations run by each sample
    # The final ADMM state (the model's own variables, e.g. E3DTV's factors), in the dtype the
    # iterations ran in (ADMMModel.converge_dtype for converge=True); x is its output.
    state: State | None = None


def check_admm_params(params: Any, where: str) -> None:
    """Checks the fields every model's parameters share: ``iterations`` and ``rho`` of the
    unrolled schedule, and ``tol``, ``min_iterations``, ``max_iterations``, ``mu_max`` of the
    ``converge=True`` stopping rule."""
    p = params
    require(p.iterations >= 1, f"{where}.iterations", p.iterations, "must be ≥ 1")
    require(p.rho >= 1, f"{where}.rho", p.rho, "the penalty growth factor must be ≥ 1")
    require(0 < p.tol < 1, f"{where}.tol", p.tol, "must be in (0, 1)")
    require(p.min_iterations >= 1, f"{where}.min_iterations", p.min_iterations, "must be ≥ 1")
    require(
        p.max_iterations >= p.min_iterations,
        f"{where}.max_iterations",
        p.max_iterations,
        f"must be ≥ min_iterations ({p.min_iterations})",
    )
    require(p.mu_max > 0, f"{where}.mu_max", p.mu_max, "must be positive")


class VariationalModel(nn.Module):
    r"""A weighted-fidelity variational denoiser ``x(w) = argmin ½ Σ w (y − x)² + R(x)``.

    Subclasses set ``name`` and ``Params`` (a frozen dataclass of the model's settings, the
    reference values as defaults), implement :meth:`regularizer` and :meth:`solve`, and state
    the model's facts, which the rest of the benchmark reads from the class (through
    :data:`~pipeline.models.registry.MODELS`) instead of keeping its own lists:

    ``role``
        what the benchmark does with the model (one of :data:`ROLES`): ``"target"``, a
        variational model evaluated with every weighting map (unweighted, oracle, handcrafted,
        learned), or ``"peer"``, a classical robust baseline evaluated unweighted only.
    ``strength_fields``, ``strength_inverse``
        the fields of ``Params`` that make up the model's *main* regularisation strength (what
        the evaluate stage tunes and ``stages.apply --strength`` multiplies,
        :func:`~pipeline.models.strength.scaled_params`), and whether they weigh the fidelity
        rather than :math:`R`: a multiplier :math:`m` multiplies a weight of :math:`R`
        (``strength_inverse = False``) and divides a weight of the fidelity (``True``). Several
        fields are scaled together; settings that are not regularisation weights (penalties,
        tolerances, a robust fidelity's outlier threshold) are not listed and stay.
    ``penalty_fields``
        the ADMM penalty fields (initial penalties and their cap) that a strength multiplier
        :math:`m` scales by :math:`\sqrt m` in converged solves
        (:func:`~pipeline.models.strength.scaled_params`): the penalty does not change the
        minimiser, but with the reference penalties a weak regulariser converges slowly (the
        multiplier of :math:`U = DZ` is bounded by the strength, so the relative dual residual
        needs tiny steps). ``benchmarks/penalty_scaling.py`` (val cubes of the five denoising
        cases, tol 1e-3, float32, w = 1 and oracle, ×1/16, ×1/4, ×4): LRTV 17,890 → 4,920
        iterations (31.5 → 8.5 s), five solves at the 3,000 cap before and none after; TV 2.9×,
        TVS 2.1×, TV-L1 1.5× fewer iterations; TV on the tasks 4.6× (×2 super-resolution at
        ×1/16: 1,565 → 345); objectives within +1e-3 relative (most lower), MPSNR within
        0.14 dB (TVS 0.38). E3DTV (non-convex) is left alone: the same scaling moved its
        results by up to 3.2 dB.
        Empty for a model without such penalties or with its own rule.
    ``unrolled_cost``
        relative cost of one step of the unrolled solve (``converge=False``, DLW's bilevel
        training backpropagates through it) when the model serves as a DLW source model,
        measured at 32×32×31, batch 4, TV = 1; ``None`` for a model that is not usable as a
        source model. The training orders its trials by it.
    ``operators``
        the kinds of forward operator (:func:`pipeline.degrade.operators.operator_kind`:
        ``identity``, ``blur``, ``downsample``, ``inpaint``) that ``solve(..., converge=True,
        A=A)`` accepts, i.e. for which it minimises :math:`\tfrac12 \sum_i w_i (y - Ax)_i^2 +
        R(x)` with :math:`y, w` on the grid of :math:`Ax` and :math:`x` on the full grid, *and*
        the problem is well posed: the regulariser must control what :math:`A` loses (spectral
        TV alone does not control the spatial frequencies a blur or a down-sampling removes).
        ``A=None`` or ``Identity()`` is the denoising model of every model; another kind is a
        ``ValueError``.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    role: ClassVar[str]
    strength_fields: ClassVar[tuple[str, ...]]
    strength_inverse: ClassVar[bool]
    unrolled_cost: ClassVar[float | None]
    penalty_fields: ClassVar[tuple[str, ...]] = ()
    operators: ClassVar[tuple[str, ...]] = ("identity",)

    def __init__(self, params: Any = None) -> None:
        super().__init__()
        if params is None:
            params = self.Params()
        if not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} needs {self.Params.__name__}, got {params!r}")
        self.params = params

    def extra_repr(self) -> str:
        return repr(self.params)

    def fidelity(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r""":math:`\tfrac12 \sum_i w_i (y_i - x_i)^2` per sample, ``(B,)``."""
        return 0.5 * (w * (y - x) ** 2).flatten(1).sum(1)

    def regularizer(self, x: Tensor) -> Tensor:
        """:math:`R(x)` per sample, ``(B,)``."""
        raise NotImplementedError

    def objective(
        self, x: Tensor, y: Tensor, w: Tensor | None = None, A: LinearOperator | None = None
    ) -> Tensor:
        """The objective the model minimises, per sample ``(B,)``: ``fidelity(Ax, y, w) + R(x)``
        (``A = None``: the identity)."""
        y, w = self._inputs(y, w)
        if A is None or isinstance(A, Identity):
            return self.fidelity(x, y, w) + self.regularizer(x)
        ax = A.A(x)
        if ax.shape != y.shape:
            raise ValueError(f"A(x) has shape {tuple(ax.shape)}, y {tuple(y.shape)}")
        return self.fidelity(ax, y, w) + self.regularizer(x)

    def solve(
        self,
        y: Tensor,
        w: Tensor | None = None,
        *,
        converge: bool = False,
        A: LinearOperator | None = None,
    ) -> Solution:
        raise NotImplementedError

    def forward(
        self,
        y: Tensor,
        w: Tensor | None = None,
        *,
        converge: bool = False,
        A: LinearOperator | None = None,
    ) -> Tensor:
        return self.solve(y, w, converge=converge, A=A).x

    def _operator(self, A: LinearOperator | None, y: Tensor) -> LinearOperator | None:
        """``A``, checked against the model and ``y``; ``None`` for the identity."""
        if A is None or isinstance(A, Identity):
            return None
        if not isinstance(A, LinearOperator):
            raise ValueError(f"A must be a LinearOperator, got {type(A).__name__}")
        if operator_kind(A) not in self.operators:
            raise ValueError(
                f"model {self.name!r} ({type(self).__name__}) takes the operators "
                f"{', '.join(self.operators)} only (A = None or Identity: denoising), got "
                f"{type(A).__name__}"
            )
        try:
            ay = A.A(A.A_adjoint(y))
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"{type(A).__name__} does not apply to y of shape {tuple(y.shape)}: {error}"
            ) from None
        if ay.shape != y.shape:
            raise ValueError(
                f"A(Aᵀy) has shape {tuple(ay.shape)}, y {tuple(y.shape)}: y must lie on the "
                f"grid of {type(A).__name__}'s output"
            )
        return A

    @staticmethod
    def _inputs(y: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        if not isinstance(y, Tensor) or y.ndim != 4:
            raise ValueError(f"y must be a (B, C, H, W) tensor, got {getattr(y, 'shape', y)!r}")
        if y.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"y must be float32 or float64, got {y.dtype}")
        if w is None:
            return y, torch.ones_like(y)
        if w.dtype != y.dtype or w.device != y.device:
            raise ValueError(
                f"w ({w.dtype}, {w.device}) must have the dtype and device of y "
                f"({y.dtype}, {y.device})"
            )
        try:
            w = w.expand_as(y)
        except RuntimeError:
            shapes = f"{tuple(w.shape)} does not broadcast to y {tuple(y.shape)}"
            raise ValueError(f"w {shapes}") from None
        if bool((w.detach() < 0).any()):  # the fidelity would be non-convex
            raise ValueError("w must be non-negative")
        return y, w


class ADMMModel(VariationalModel):
    """The ADMM driver: subclasses give the state, one iteration and the residuals.

    ``_prepare(y, w) -> ctx`` precomputes what every iteration needs (``_prepare_operator(y, w,
    A)`` the same with a forward operator, for an operator-aware model); ``_init(ctx)`` is the
    reference start; ``_mu(ctx, k)`` the penalty of iteration ``k`` (0-based), capped at the
    model's ``mu_max``; ``_step(ctx, state, mu)`` one ADMM iteration (of ``converge=True``);
    ``_unrolled_step(ctx, state, mu)`` one iteration of ``converge=False`` (by default
    ``_step``; the DLW source models override it with the reference's order of the updates);
    ``_residuals(ctx, new, old, mu)`` the relative primal and dual residuals ``(B,)`` of the
    step ``old → new``; ``_output(ctx, state)`` the returned image; ``_objective(ctx, state, x,
    y, w)`` the reported objective (by default :meth:`objective` at the output). The final
    state comes back as :attr:`Solution.state`.
    """

    # Precision of converge=True. float32 is ≈ 25 % faster (TV, LRTV, E3DTV at 32×32×31) and
    # gives the same MPSNR to 1e-3 dB at tolerances ≥ 1e-3 (benchmarks/tolerance.py); the tests'
    # 1e-5 tolerances need float64.
    converge_dtype: torch.dtype = torch.float64

    def _prepare(self, y: Tensor, w: Tensor) -> Any:
        raise NotImplementedError

    def _prepare_operator(self, y: Tensor, w: Tensor, A: LinearOperator) -> Any:
        raise NotImplementedError

    def _init(self, ctx: Any) -> State:
        raise NotImplementedError

    def _mu(self, ctx: Any, k: int) -> Any:
        raise NotImplementedError

    def _step(self, ctx: Any, state: State, mu: Any) -> State:
        raise NotImplementedError

    def _unrolled_step(self, ctx: Any, state: State, mu: Any) -> State:
        return self._step(ctx, state, mu)

    def _residuals(self, ctx: Any, new: State, old: State, mu: Any) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _output(self, ctx: Any, state: State) -> Tensor:
        raise NotImplementedError

    def _objective(self, ctx: Any, state: State, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """The objective a solve reports, at the output ``x = _output(ctx, state)`` (``y``, ``w``
        in the dtype of ``ctx``): :meth:`objective` by default; a model whose objective is
        better taken at its own variables than at ``x`` alone overrides it (E3DTV)."""
        return self.objective(x, y, w)

    # Public: ADMM one step at a time (used by the tests and for diagnostics).
    def initial_state(
        self, y: Tensor, w: Tensor | None = None, A: LinearOperator | None = None
    ) -> tuple[Any, State]:
        """``(ctx, state)``: the precomputed context and the reference start (with ``A``: the
        start of ``converge=True``)."""
        y, w = self._inputs(y, w)
        A = self._operator(A, y)
        ctx = self._prepare(y, w) if A is None else self._prepare_operator(y, w, A)
        return ctx, self._init(ctx)

    def step(self, ctx: Any, state: State, k: int) -> State:
        """ADMM iteration ``k`` (0-based) from ``state``, as ``converge=True`` runs it."""
        return self._step(ctx, state, self._mu(ctx, k))

    def unrolled_step(self, ctx: Any, state: State, k: int) -> State:
        """ADMM iteration ``k`` (0-based) from ``state``, as ``converge=False`` runs it."""
        return self._unrolled_step(ctx, state, self._mu(ctx, k))

    def output(self, ctx: Any, state: State) -> Tensor:
        """The image a solve would return from ``state`` (the splitting variable Z)."""
        return self._output(ctx, state)

    def solve(
        self,
        y: Tensor,
        w: Tensor | None = None,
        *,
        converge: bool = False,
        A: LinearOperator | None = None,
    ) -> Solution:
        y, w = self._inputs(y, w)
        A = self._operator(A, y)
        if converge:
            return self._solve_converge(y, w, A)
        if A is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: the unrolled solve (converge=False) is the denoising "
                f"reference only; with {type(A).__name__} use converge=True"
            )
        return self._solve_unrolled(y, w)

    def _unrolled_iterations(self, y: Tensor, w: Tensor) -> tuple[Any, State, State, Any]:
        """``(ctx, state, old, mu)``: the ``iterations`` unrolled steps from the reference
        start, the last step ``old → state`` at penalty ``mu`` (autograd records them; a model
        with a hand-written adjoint overrides this)."""
        ctx = self._prepare(y, w)
        state = self._init(ctx)
        for k in range(self.params.iterations):  # ≥ 1 (checked): old and mu are bound
            old, mu = state, self._mu(ctx, k)
            state = self._unrolled_step(ctx, state, mu)
        return ctx, state, old, mu

    def _solve_unrolled(self, y: Tensor, w: Tensor) -> Solution:
        p = self.params
        ctx, state, old, mu = self._unrolled_iterations(y, w)
        x = self._output(ctx, state)
        with torch.no_grad():
            primal, dual = self._residuals(ctx, state, old, mu)
            objective = self._objective(ctx, state, x, y, w)
        its = torch.full((y.shape[0],), p.iterations, dtype=torch.int64, device=y.device)
        return Solution(
            x=x,
            iterations=p.iterations,
            primal_residual=primal,
            dual_residual=dual,
            objective=objective,
            converged=(primal < p.tol) & (dual < p.tol),
            sample_iterations=its,
            state=state,
        )

    def _solve_converge(self, y: Tensor, w: Tensor, A: LinearOperator | None = None) -> Solution:
        p = self.params
        dtype = y.dtype
        y64, w64 = y.to(self.converge_dtype), w.to(self.converge_dtype)
        ctx = self._prepare(y64, w64) if A is None else self._prepare_operator(y64, w64, A)
        state = self._init(ctx)
        b = y.shape[0]
        done = torch.zeros(b, dtype=torch.bool, device=y.device)
        its = torch.zeros(b, dtype=torch.int64, device=y.device)
        primal = torch.full((b,), math.inf, dtype=torch.float64, device=y.device)
        dual = primal.clone()
        k = 0
        for k in range(p.max_iterations):
            mu = self._mu(ctx, k)
            new = self._step(ctx, state, mu)
            check = _is_check(k + 1, p.min_iterations, p.max_iterations)
            if check:
                with torch.no_grad():
                    r, s = self._residuals(ctx, new, state, mu)
            active = ~done
            its = torch.where(active, k + 1, its)
            if check:
                primal = torch.where(active, r, primal)
                dual = torch.where(active, s, dual)
            # Frozen samples keep their state: the stopping rule never couples samples.
            if bool(done.any()):
                state = {
                    key: torch.where(_per_sample(done, value), state[key], value)
                    for key, value in new.items()
                }
            else:
                state = new
            if check:
                done = done | ((r < p.tol) & (s < p.tol))
                if bool(done.all()):
                    break
        x64 = self._output(ctx, state)
        with torch.no_grad():
            if A is None:
                objective = self._objective(ctx, state, x64, y64, w64)
            else:
                objective = self.objective(x64, y64, w64, A)
        return Solution(
            x=x64.to(dtype),
            iterations=k + 1,
            primal_residual=primal.to(dtype),
            dual_residual=dual.to(dtype),
            objective=objective.to(dtype),
            converged=done,
            sample_iterations=its,
            state=state,
        )


CHECK_EVERY = 5


def _is_check(iteration: int, first: int, last: int) -> bool:
    """Whether the stopping rule is evaluated after ``iteration`` (1-based): at
    ``min_iterations`` and every :data:`CHECK_EVERY` iterations after it, and at the cap. The
    residuals cost a quarter to a third of a TV or LRTV iteration; a stop up to
    ``CHECK_EVERY − 1`` iterations late only tightens the result."""
    return iteration == last or (iteration >= first and (iteration - first) % CHECK_EVERY == 0)


def penalty(mu0: float, rho: float, k: int, cap: float) -> float:
    r""":math:`\min(\mu_0 \rho^k, \text{cap})`, without overflowing :math:`\rho^k`."""
    if rho > 1 and mu0 < cap:
        k = min(k, math.ceil(math.log(cap / mu0) / math.log(rho)))
    return min(mu0 * rho**k, cap)


def _per_sample(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.ndim - 1)))


def norm(t: Tensor) -> Tensor:
    """Frobenius norm of each sample, ``(B,)``."""
    return t.flatten(1).norm(dim=1)


def stacked_norm(a: Tensor, b: Tensor) -> Tensor:
    """Norm of the concatenation of two per-sample tensors, ``(B,)``."""
    return torch.hypot(norm(a), norm(b))


def relative(num: Tensor, den: Tensor, n: int) -> Tensor:
    return num / den.clamp_min(RESIDUAL_FLOOR * math.sqrt(n))
