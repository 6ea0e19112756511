r"""The critic of the adversarial local regulariser and its gradient penalty (Prost, Houdard,
Almansa, Papadakis, "Learning local regularization for variational image restoration", SSVM
2021).

:class:`Critic` :math:`r_\theta`: fully convolutional, no padding —

.. code-block:: text

    Conv 3×3 (1 → w1), ReLU, Conv 3×3 (w1 → w2), ReLU, Conv 3×3 stride 3 (w2 → w2), ReLU,
    Conv 3×3 (w2 → w2), ReLU, Conv 1×1 (w2 → w3), ReLU, Conv 1×1 (w3 → w3)

and the mean over the last :math:`w_3` channels (paper: :math:`(w_1, w_2, w_3) = (128, 64, 32)`).
A 15×15 patch gives one number; an :math:`H \times W` image gives the map of its 15×15 patches on
the stride-3 grid, of shape :math:`(\lfloor (H-15)/3\rfloor + 1, \lfloor (W-15)/3\rfloor + 1)`,
entry :math:`(i, j)` being the critic of the patch at :math:`(3i, 3j)`. The layers' receptive
field is in fact 13×13 (3 + 2 + 2, then 2 × 3 after the stride): the last two rows and columns of
a 15×15 patch do not enter its score, as in the authors' network; the image is cropped to the
rows and columns the patch grid uses, so the map has exactly one entry per patch.

Bands are folded into the batch: the critic is single-band, tensors are ``(N, 1, H, W)``, and a
cube of any number of bands is N = C grey images (the paper's critic takes the 3 RGB channels
together; a hyperspectral cube has 31, and a per-band critic transfers to any band count).

WGAN-GP (Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017), the paper's
critic loss on unpaired clean patches :math:`x` and noisy patches :math:`y`:

.. math:: L(\theta) = \operatorname{mean} r_\theta(x) - \operatorname{mean} r_\theta(y)
          + \mu\,\operatorname{mean}_n \big(\|\nabla r_\theta(\hat x_n)\|_2 - 1\big)^2,
          \qquad \hat x_n = \alpha_n x_n + (1 - \alpha_n) y_n,\ \alpha_n \sim U[0, 1],

so that :math:`\operatorname{mean} r(y) - \operatorname{mean} r(x)` estimates the Wasserstein-1
distance between noisy and clean patches: the critic scores clean patches **low**, and its mean
over an image is a regulariser (:mod:`pipeline.methods.alr.solve`).

:class:`ALRPart` is the trained part (what ``models/alr/<variant>/seed-<k>.pt`` holds): the critic
and, as buffers, the restoration's settings — the calibrated λ of strength 1 and the Adam
schedules — so that ``restore`` needs nothing but the part.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.alr.params import PATCH
from pipeline.methods.precision import Precision

__all__ = ["STRIDE", "ALRPart", "Critic", "gradient_penalty", "load_alr", "wgan_gp_loss"]

STRIDE = 3  # the stride of the critic's third convolution: its map's grid
# 1e-12 inside the square root of the gradient norm: its derivative stays finite at ∇r = 0.
EPS = 1e-12


class Critic(Precision, nn.Module):
    """:math:`r_\\theta`: ``(N, 1, H, W) → (N, Hm, Wm)``, the map of the 15×15 patches on the
    stride-3 grid (module docstring); ``H, W ≥ 15``."""

    def __init__(self, widths: Sequence[int] = (128, 64, 32)) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        if min(w1, w2, w3) < 1:
            raise ValueError(f"critic widths must be ≥ 1, got {list(widths)}")
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(1, w1, 3),
                nn.Conv2d(w1, w2, 3),
                nn.Conv2d(w2, w2, 3, stride=STRIDE),
                nn.Conv2d(w2, w2, 3),
                nn.Conv2d(w2, w3, 1),
                nn.Conv2d(w3, w3, 1),
            ]
        )

    @property
    def widths(self) -> tuple[int, int, int]:
        return (self.convs[0].out_channels, self.convs[1].out_channels, self.convs[4].out_channels)

    @staticmethod
    def grid(h: int, w: int) -> tuple[int, int]:
        """The map's shape on an ``h × w`` image: ``((h − 15)//3 + 1, (w − 15)//3 + 1)``."""
        if h < PATCH or w < PATCH:
            raise ValueError(f"the critic needs images of at least {PATCH}×{PATCH}, got {h}×{w}")
        return (h - PATCH) // STRIDE + 1, (w - PATCH) // STRIDE + 1

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"the critic takes (N, 1, H, W) images, got {tuple(x.shape)}")
        hm, wm = self.grid(*x.shape[-2:])
        # Only the rows and columns the patch grid reads: the net then gives exactly hm × wm.
        h = x[..., : STRIDE * (hm - 1) + PATCH, : STRIDE * (wm - 1) + PATCH]
        # channels_last: oneDNN's fast path for these few-channel convolutions on a CPU
        # (a 31-band 32×32 restoration ran ~2× faster than with contiguous NCHW).
        h = h.contiguous(memory_format=torch.channels_last)
        last = len(self.convs) - 1
        with self.autocast(x.device):
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < last:
                    h = F.relu(h)
        return h.to(x.dtype).mean(dim=1)

    def score(self, x: Tensor) -> Tensor:
        """One number per sample: the mean of its map, ``(N,)`` (a 15×15 patch: its critic)."""
        return self.forward(x).flatten(1).mean(1)


def gradient_penalty(score: Callable[[Tensor], Tensor], x_hat: Tensor) -> Tensor:
    r""":math:`\operatorname{mean}_n (\|\nabla_x s(\hat x_n)\|_2 - 1)^2` for a per-sample score
    ``s: (N, ...) → (N,)`` at the points ``x_hat`` (the norm over all of a sample's entries,
    :math:`\sqrt{\|g\|^2 + 10^{-12}}`); differentiable in the critic's weights."""
    x_hat = x_hat.detach().requires_grad_(True)
    s = score(x_hat)
    if s.shape != x_hat.shape[:1]:
        raise ValueError(f"score must give one number per sample, got {tuple(s.shape)}")
    (g,) = torch.autograd.grad(s.sum(), x_hat, create_graph=True)
    norm = torch.sqrt(g.flatten(1).pow(2).sum(1) + EPS)
    return ((norm - 1) ** 2).mean()


def wgan_gp_loss(
    critic: Critic, clean: Tensor, noisy: Tensor, alpha: Tensor, mu: float
) -> tuple[Tensor, dict[str, float]]:
    r"""The critic loss :math:`L(\theta)` of the module docstring on a batch (``alpha``: one
    :math:`\alpha_n \in [0, 1]` per sample, ``(N,)``), and its terms: ``loss``, ``wasserstein``
    (:math:`\operatorname{mean} r(y) - \operatorname{mean} r(x)`) and ``gp`` (unweighted)."""
    r_clean = critic.score(clean).mean()
    r_noisy = critic.score(noisy).mean()
    a = alpha.to(clean).reshape(-1, *([1] * (clean.ndim - 1)))
    gp = gradient_penalty(critic.score, a * clean + (1 - a) * noisy)
    loss = r_clean - r_noisy + mu * gp
    terms = {
        "loss": float(loss.detach()),
        "wasserstein": float((r_noisy - r_clean).detach()),
        "gp": float(gp.detach()),
    }
    return loss, terms


class ALRPart(nn.Module):
    """The trained part: the critic and the restoration's settings as buffers — ``lam`` (λ at
    strength 1, per-pixel units: :mod:`pipeline.methods.alr.solve`), ``iterations`` and
    ``restore_lr`` (first, last Adam step) for denoising, ``operator_iterations`` and
    ``operator_lr`` for the tasks with an operator."""

    def __init__(
        self,
        widths: Sequence[int] = (128, 64, 32),
        lam: float = 0.02,
        iterations: int = 70,
        restore_lr: Sequence[float] = (0.01, 0.001),
        operator_iterations: int = 50,
        operator_lr: Sequence[float] = (0.1, 0.01),
    ) -> None:
        super().__init__()
        self.critic = Critic(widths)
        f64 = torch.float64
        self.register_buffer("lam", torch.tensor(float(lam), dtype=f64))
        self.register_buffer("iterations", torch.tensor(int(iterations)))
        self.register_buffer("restore_lr", torch.tensor([float(v) for v in restore_lr], dtype=f64))
        self.register_buffer("operator_iterations", torch.tensor(int(operator_iterations)))
        self.register_buffer(
            "operator_lr", torch.tensor([float(v) for v in operator_lr], dtype=f64)
        )

    def schedule(self, operator: bool) -> tuple[int, float, float]:
        """``(iterations, first lr, last lr)`` of the restoration with or without an operator."""
        if operator:
            lr = self.operator_lr.tolist()
            return int(self.operator_iterations), float(lr[0]), float(lr[1])
        lr = self.restore_lr.tolist()
        return int(self.iterations), float(lr[0]), float(lr[1])

    def architecture(self) -> dict:
        return {"name": "alr-critic", "widths": list(self.critic.widths), "patch": PATCH}

    @classmethod
    def from_state_dict(cls, state: dict) -> ALRPart:
        """The part of a state dict, its widths read from the weight shapes."""
        try:
            widths = (
                state["critic.convs.0.weight"].shape[0],
                state["critic.convs.1.weight"].shape[0],
                state["critic.convs.4.weight"].shape[0],
            )
        except KeyError as exc:
            raise ValueError(f"not an ALR critic's state dict (missing {exc})") from None
        part = cls(widths)
        part.load_state_dict(state)
        return part


def load_alr(path: str | os.PathLike, map_location: str = "cpu") -> ALRPart:
    """An :class:`ALRPart` from ``models/alr/<variant>/seed-<k>.pt`` (a state dict) or a training
    checkpoint (its ``state_dict``), in eval mode, its weights frozen;
    ``torch.load(weights_only=True)``."""
    from pipeline.checkpoint import state_dict_of

    state = state_dict_of(path, map_location)
    try:
        part = ALRPart.from_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return part.to(map_location).eval().requires_grad_(False)
