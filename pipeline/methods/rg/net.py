r"""The regularising gradient :math:`G_\phi` and the trained part of the method (Willingham,
Sjöström, Guillemot, "Regularising gradients for multi-task image restoration", VISAPP 2024).

:class:`GradNet` :math:`G_\phi`: a residual CNN on single-band images ``(N, 1, H, W)`` (bands are
folded into the batch, so it takes any number of bands): ``depth`` 3×3 convolutions, ``1 →
width → … → width → 1`` channels, zero padding 1 (the size is kept, odd sizes too), a ReLU after
every convolution but the last. Its output is a gradient-like map of the input's shape,

.. math:: G_\phi(x) = \mathrm{CNN}_\phi(x) / s_0,\qquad s_0 = \texttt{SCORE\_SCALE},

the "residual" of a DnCNN-type denoiser (Zhang et al., IEEE TIP 2017): trained as a denoiser
(variant ``denoiser``) it predicts :math:`n / s` from :math:`\bar x + s n`, i.e. by Tweedie's
formula the negative score :math:`(x - \mathbb E[\bar x \mid x]) / s^2` of the noise-smoothed
prior — the gradient of the regulariser :math:`-\log p_s`. The fixed factor :math:`1/s_0` lets
the convolutions work at O(1) while the target :math:`n/s` is O(1/s) for noise levels of a few
per cent. The paper's own architecture was not available: this one is the project's.

:class:`RGNet`: :math:`G_\phi`, the regularisation weight :math:`\lambda = e^{\rho}` (a learned
scalar, or fixed), the GD step :math:`\tau` and the test-time solve (solver, ``max_iter``,
``tol``, Anderson memory; fixed buffers, so a part restores as it was validated) — the part a
trial hands on (``models/rg/<variant>/seed-<k>.pt`` holds its state dict;
:meth:`RGNet.from_state_dict` reads the architecture back from the tensor shapes).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from pipeline.methods.precision import Precision
from pipeline.methods.rg.params import SOLVERS

__all__ = ["SCORE_SCALE", "GradNet", "RGNet", "load_rg"]

# s_0: the output scale of G_φ (a typical training noise level, 5 % of the range).
SCORE_SCALE = 0.05


class GradNet(Precision, nn.Module):
    r""":math:`G_\phi`: ``x (N, 1, H, W) → (N, 1, H, W)`` (module docstring)."""

    def __init__(self, width: int = 16, depth: int = 5) -> None:
        super().__init__()
        if width < 1 or depth < 2:
            raise ValueError(f"GradNet needs width ≥ 1 and depth ≥ 2, got {width}, {depth}")
        chans = [1] + [width] * (depth - 1) + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(chans)
        )

    @property
    def width(self) -> int:
        return self.convs[0].out_channels

    @property
    def depth(self) -> int:
        return len(self.convs)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"GradNet takes (N, 1, H, W) images, got {tuple(x.shape)}")
        h = x
        with self.autocast(x.device):  # the gradient step around it stays float32
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < len(self.convs) - 1:
                    h = torch.relu(h)
        return h.to(x.dtype) / SCORE_SCALE


class RGNet(nn.Module):
    r""":math:`G_\phi`, :math:`\lambda = e^{\rho}` and :math:`\tau` (module docstring)."""

    def __init__(
        self,
        width: int = 16,
        depth: int = 5,
        lam: float = 0.002,
        tau: float = 1.0,
        learn_lam: bool = True,
        solver: str = "anderson",
        max_iter: int = 30,
        tol: float = 1e-3,
        anderson_m: int = 5,
    ) -> None:
        super().__init__()
        if not (lam > 0 and 0 < tau <= 2):
            raise ValueError(f"RGNet needs λ > 0 and τ in (0, 2], got {lam}, {tau}")
        if solver not in SOLVERS:
            raise ValueError(f"RGNet: unknown solver {solver!r} (known: {', '.join(SOLVERS)})")
        self.grad = GradNet(width, depth)
        self.log_lam = nn.Parameter(torch.tensor(math.log(lam)), requires_grad=learn_lam)
        self.register_buffer("tau", torch.tensor(float(tau)))
        # The test-time solve travels with the part: solver index, max_iter, tol, Anderson m.
        setting = [SOLVERS.index(solver), max_iter, tol, anderson_m]
        self.register_buffer("solve", torch.tensor(setting, dtype=torch.float64))

    @property
    def solve_settings(self) -> dict:
        """``solver``, ``max_iter``, ``tol``, ``m``: how the restorer finds the fixed point."""
        index, max_iter, tol, m = self.solve.tolist()
        return {"solver": SOLVERS[int(index)], "max_iter": int(max_iter), "tol": tol, "m": int(m)}

    @property
    def lam(self) -> Tensor:
        """λ = exp(ρ) (a 0-d tensor, differentiable when learned)."""
        return self.log_lam.exp()

    def forward(self, x: Tensor) -> Tensor:
        return self.grad(x)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> RGNet:
        """The net whose architecture the state dict's tensor shapes tell, with its weights."""
        try:
            depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("grad.convs."))
            width = int(state["grad.convs.0.weight"].shape[0])
            lam, tau = float(state["log_lam"].exp()), float(state["tau"])
            index, max_iter, tol, m = state["solve"].tolist()
            solve = {"solver": SOLVERS[int(index)], "max_iter": int(max_iter), "tol": tol}
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"not a state dict of an rg net ({exc!r})") from None
        net = cls(width, depth, lam, tau, anderson_m=int(m), **solve)
        net.load_state_dict(state)
        return net


def load_rg(path, map_location: str | torch.device = "cpu") -> RGNet:
    """An :class:`RGNet` from ``models/rg/<variant>/seed-<k>.pt`` (a state dict) or a training
    checkpoint (its ``state_dict``), in eval mode, with every parameter frozen;
    ``torch.load(weights_only=True)``."""
    from pipeline.checkpoint import state_dict_of

    state = state_dict_of(path, map_location)
    try:
        net = RGNet.from_state_dict(state).to(map_location).eval()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return net.requires_grad_(False)
