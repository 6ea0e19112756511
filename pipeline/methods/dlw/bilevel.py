r"""The bilevel problem of DLW (Rui, Cao, Zhao, Meng, Ng, arXiv 2301.06081, §3; docs/science.md).

Lower level, for each source model :math:`t` of the source set :math:`\mathcal T`:

.. math:: X_t(\theta) = \operatorname*{argmin}_X\ \tfrac12 \sum_i w_i (y_i - x_i)^2 + R_t(X),
          \qquad w = h_\theta(Y),

approximated, as in the reference code, by the model's fixed number of unrolled ADMM
iterations (``solve(y, w).x``), differentiable in :math:`w`. Upper level, one weight map
shared by all source models:

.. math:: \min_\theta\ \frac{1}{|\mathcal T|} \sum_{t \in \mathcal T}
          \operatorname{mean}\big(X_t(\theta) - \bar X\big)^2 ,

its hypergradient obtained by backpropagation through the unrolled iterations; with
``checkpoint=True`` each iteration's intermediates are recomputed in the backward pass
(``torch.utils.checkpoint``) instead of kept: the same gradient for less memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from pipeline.methods.dlw.net import DLWNet
from pipeline.models.base import VariationalModel

__all__ = ["batch_mpsnr", "bilevel_step", "score", "unrolled", "upper_loss"]


def unrolled(model: VariationalModel, y: Tensor, w: Tensor, *, checkpoint: bool = False) -> Tensor:
    """The unrolled solution ``model.solve(y, w).x``; ``checkpoint``: the same iterations, each
    one under :func:`torch.utils.checkpoint.checkpoint` (only the iterates are kept)."""
    if not checkpoint:
        return model.solve(y, w).x
    from torch.utils.checkpoint import checkpoint as run_checkpointed

    ctx, state = model.initial_state(y, w)
    for k in range(model.params.iterations):
        state = run_checkpointed(
            model.unrolled_step, ctx, state, k, use_reentrant=False, preserve_rng_state=False
        )
    return model.output(ctx, state)


def upper_loss(
    net: DLWNet,
    models: Sequence[VariationalModel],
    noisy: Tensor,
    clean: Tensor,
    *,
    checkpoint: bool = False,
) -> tuple[Tensor, Tensor]:
    """``(loss, w)``: the mean over source models of the MSE of their unrolled solutions."""
    w = net(noisy)
    losses = [
        torch.mean((unrolled(m, noisy, w, checkpoint=checkpoint) - clean) ** 2) for m in models
    ]
    return torch.stack(losses).mean(), w


def bilevel_step(
    net: DLWNet,
    models: Sequence[VariationalModel],
    optimizer: torch.optim.Optimizer,
    noisy: Tensor,
    clean: Tensor,
    *,
    step: int,
    trial: str = "",
    checkpoint: bool = False,
) -> float:
    """One Adam step on the upper loss; returns the loss before the step.

    A non-finite loss (an exploding learning rate, a NaN in the data) would otherwise poison the
    weights silently for the rest of the trial: it stops the trial instead.
    """
    optimizer.zero_grad(set_to_none=True)
    loss, _ = upper_loss(net, models, noisy, clean, checkpoint=checkpoint)
    value = float(loss.detach())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite upper loss at step {step} of trial {trial or '?'}")
    loss.backward()
    optimizer.step()
    return value


def batch_mpsnr(x: Tensor, clean: Tensor) -> Tensor:
    """MPSNR per sample, ``(B,)``: the mean over bands of ``10 log10(1 / MSE_b)`` (data range 1,
    as :func:`pipeline.evaluate.metrics.mpsnr`)."""
    mse = ((x.double() - clean.double()) ** 2).mean(dim=(2, 3))
    return (10.0 * torch.log10(1.0 / mse)).mean(dim=1)


@torch.no_grad()
def score(
    models: Mapping[str, VariationalModel],
    noisy: Tensor,
    clean: Tensor,
    w: Tensor | None = None,
    chunk: int = 8,
) -> dict[str, float]:
    """Mean MPSNR of each model's unrolled solution with weights ``w`` (``None``: the
    unweighted model, w = 1) on a fixed set, in chunks to bound memory."""
    totals = dict.fromkeys(models, 0.0)
    for start in range(0, noisy.shape[0], chunk):
        part = slice(start, start + chunk)
        y, x = noisy[part], clean[part]
        for name, model in models.items():
            sol = model.solve(y, None if w is None else w[part]).x
            totals[name] += float(batch_mpsnr(sol, x).sum())
    return {name: total / noisy.shape[0] for name, total in totals.items()}
