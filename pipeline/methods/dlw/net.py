r"""DLWnet, the weight network of DLW (Rui, Cao, Zhao, Meng, Ng, arXiv 2301.06081; docs/science.md).

The noisy image ``Y`` (B, C, H, W) enters as a one-channel volume (B, 1, C, H, W). ``depth``
blocks of a spatial (1, 3, 3) and a spectral (3, 1, 1) convolution, each followed by a ReLU,
then a (3, 3, 3) convolution to one channel give scores :math:`h_\theta(Y)`; per sample

.. math:: w = N \cdot \operatorname{softmax}(\operatorname{vec}(h_\theta(Y))) + 10^{-4},
          \qquad N = C H W,

so the weights are positive and their mean is ≈ 1, the scale of the unweighted model (w = 1).
Padding keeps the size. The paper uses 64 filters; ``width`` and ``depth`` are parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WEIGHT_FLOOR", "DLWNet", "load_dlwnet", "normalise_weights"]

WEIGHT_FLOOR = 1e-4


def normalise_weights(h: Tensor) -> Tensor:
    r"""``(B, C, H, W)`` scores → weights :math:`N\,\mathrm{softmax}(\mathrm{vec}\,h) + 10^{-4}`,
    one softmax per sample."""
    b = h.shape[0]
    n = h[0].numel()
    return (n * torch.softmax(h.reshape(b, -1), dim=1)).reshape(h.shape) + WEIGHT_FLOOR


class DLWNet(nn.Module):
    """``forward(y: (B, C, H, W)) -> w: (B, C, H, W)``, the normalised weight map.

    Parameters are stored as :class:`torch.nn.Conv3d` layers (the paper's architecture, and the
    state-dict layout of every checkpoint); :meth:`scores` evaluates the separable (1, 3, 3) and
    (3, 1, 1) convolutions as 2-D convolutions over reshaped volumes, which gives the same
    numbers about twice as fast as ``conv3d`` on CPU (measured: 32×32×31, width 16).
    """

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"DLWNet needs width ≥ 1 and depth ≥ 1, got {width}, {depth}")
        self.width, self.depth = width, depth
        self.spatial = nn.ModuleList()
        self.spectral = nn.ModuleList()
        for i in range(depth):
            self.spatial.append(
                nn.Conv3d(1 if i == 0 else width, width, (1, 3, 3), padding=(0, 1, 1))
            )
            self.spectral.append(nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0)))
        self.head = nn.Conv3d(width, 1, (3, 3, 3), padding=1)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> DLWNet:
        """A net shaped after ``state`` (width and depth read from the tensor shapes)."""
        try:
            depth = sum(1 for k in state if k.startswith("spatial.") and k.endswith(".weight"))
            width = int(state["head.weight"].shape[1])
        except (KeyError, AttributeError, IndexError) as exc:
            raise ValueError(f"not a DLWNet state dict (missing {exc})") from None
        net = cls(width, depth)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"not a DLWNet state dict ({exc})") from None
        return net

    def scores(self, y: Tensor) -> Tensor:
        """The unnormalised scores :math:`h_\\theta(Y)`, ``(B, C, H, W)``."""
        if y.ndim != 4:
            raise ValueError(f"DLWNet needs y of shape (B, C, H, W), got {tuple(y.shape)}")
        b, c, h, w = y.shape
        z = y.reshape(b * c, 1, h, w)  # layout (B·C, F, H, W): bands are independent 2-D images
        for spatial, spectral in zip(self.spatial, self.spectral, strict=True):
            z = F.relu(F.conv2d(z, spatial.weight[:, :, 0], spatial.bias, padding=1))
            f = z.shape[1]
            # (B, F, C, H·W): the spectral kernel runs along the band axis.
            v = z.reshape(b, c, f, h * w).transpose(1, 2)
            v = F.relu(F.conv2d(v, spectral.weight[..., 0], spectral.bias, padding=(1, 0)))
            z = v.transpose(1, 2).reshape(b * c, f, h, w)
        vol = z.reshape(b, c, -1, h, w).transpose(1, 2)  # (B, F, C, H, W)
        return F.conv3d(vol, self.head.weight, self.head.bias, padding=1)[:, 0]

    def forward(self, y: Tensor) -> Tensor:
        return normalise_weights(self.scores(y))

    def reference_scores(self, y: Tensor) -> Tensor:
        """:meth:`scores` with plain ``conv3d`` layers: the paper's computation (for tests)."""
        z = y.unsqueeze(1)
        for spatial, spectral in zip(self.spatial, self.spectral, strict=True):
            z = F.relu(spectral(F.relu(spatial(z))))
        return self.head(z)[:, 0]


def load_dlwnet(path, map_location: str | torch.device = "cpu") -> DLWNet:
    """A :class:`DLWNet` from ``models/dlw/<set>/seed-<k>.pt`` (a state dict) or from a training
    checkpoint (its ``state_dict`` entry), in eval mode; ``torch.load(weights_only=True)``."""
    from pipeline.checkpoint import state_dict_of

    state = state_dict_of(path, map_location)
    try:
        return DLWNet.from_state_dict(state).eval()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
