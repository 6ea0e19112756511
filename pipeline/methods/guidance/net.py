r"""The networks of proxy-based hyper-guidance (Gao, Liu, Liu, Fan, The Visual Computer 2023).

Non-blind deconvolution :math:`y = k * x + n`, :math:`n \sim \mathcal N(0, \sigma^2)` per pixel.
Bands are folded into the batch: every net here is 2-D and single-channel, tensors are
``(N, 1, H, W)``.

* :class:`ProxyNet` :math:`H_\theta`: the hyper-network (proxy) that estimates the noise-level
  map :math:`\hat\sigma = H_\theta(y) \ge 0` — four 3×3 convolutions of ``width`` channels, a
  ReLU after each (the last one too, so :math:`\hat\sigma \ge 0`), no batch norm (its init:
  :meth:`ProxyNet.reset_parameters`).
* :func:`fft_deconv`: the data step of half-quadratic splitting,

  .. math:: z = \operatorname{argmin}_z \|k * z - y\|^2 + \rho \|z - x\|^2
            = F^{-1}\!\left[\frac{\bar{\hat k}\,F(y) + \rho F(x)}{|\hat k|^2 + \rho}\right],

  exact for the circular convolution, :math:`\hat k` the DFT of the kernel zero-padded to the
  image and rolled so that its centre sits at (0, 0) (:func:`otf`, the convention of
  :class:`pipeline.degrade.operators.Blur`).
* :class:`Denoiser`: a residual CNN of dilated 3×3 convolutions (IRCNN-like), ``tiny`` with
  dilations 1, 2, 3, 3, 2, 1 or ``general`` with 1, 2, 3, 4, 4, 4, 3, 2, 1, ReLU between layers
  (not after the last), padding = dilation (size kept, odd sizes too). Its input is
  :math:`[z, \hat\sigma]` (2 channels) when guided, :math:`z` alone otherwise.
* :class:`HQSNet` :math:`A_\omega`: K unrolled stages, each its own denoiser,
  :math:`x_0 = y`, :math:`z_i = \mathrm{deconv}(y, k, x_{i-1}, \rho_i)`,
  :math:`x_i = z_i - D_i([z_i, \hat\sigma])`, with the IRCNN schedule of :func:`ircnn_rhos`.
* :class:`GuidanceNet`: both, the trained part of one variant (its state dict is what
  ``models/guidance/<variant>/seed-<k>.pt`` holds; :meth:`GuidanceNet.from_state_dict` reads
  the architecture back from the tensor shapes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.precision import Precision

__all__ = [
    "DILATIONS",
    "PROXY_BIAS",
    "SIGMA_SCALE",
    "Denoiser",
    "GuidanceNet",
    "HQSNet",
    "ProxyNet",
    "fft_deconv",
    "ircnn_rhos",
    "load_guidance",
    "otf",
]

# Initial bias of the proxy's last layer: a noise level inside the paper's 1–5 % range.
PROXY_BIAS = 0.03
# Noise levels are a few % of the range: inside the nets they are measured in units of
# 1 / SIGMA_SCALE (the proxy sees SIGMA_SCALE · y and returns its output / SIGMA_SCALE; the
# denoisers see SIGMA_SCALE · σ̂), so that features and σ are O(1) against Adam's steps of
# ~lr per weight (ProxyNet.reset_parameters).
SIGMA_SCALE = 20.0

DILATIONS: dict[str, tuple[int, ...]] = {
    "tiny": (1, 2, 3, 3, 2, 1),
    "general": (1, 2, 3, 4, 4, 4, 3, 2, 1),
}


def ircnn_rhos(
    stages: int, sigma_max: float = 49.0, sigma_min: float = 13.0, noise: float = 0.01
) -> list[float]:
    r"""The IRCNN penalty schedule: :math:`\rho_i = (\text{noise}^2/3) / (\sigma_i/255)^2` with
    :math:`\sigma_i` log-spaced from ``sigma_max`` down to ``sigma_min`` over ``stages``
    (Zhang et al. 2017; the paper's ``get_rho_and_net_index``)."""
    if stages < 1:
        raise ValueError(f"stages must be ≥ 1, got {stages}")
    sig = np.logspace(math.log10(sigma_max), math.log10(sigma_min), stages)
    return [float((noise**2 / 3) / (s / 255.0) ** 2) for s in sig]


def otf(kernel: Tensor, shape: Sequence[int]) -> Tensor:
    r""":math:`\hat k`: ``rfft2`` of the kernel ``(..., kh, kw)`` zero-padded to ``shape``
    ``(H, W)`` with its centre ``(kh // 2, kw // 2)`` rolled to index (0, 0)."""
    (kh, kw), (h, w) = kernel.shape[-2:], tuple(shape)
    if kh > h or kw > w:
        raise ValueError(f"kernel of shape {(kh, kw)} larger than the image {(h, w)}")
    psf = kernel.new_zeros(*kernel.shape[:-2], h, w)
    psf[..., :kh, :kw] = kernel
    return torch.fft.rfft2(torch.roll(psf, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1)))


def fft_deconv(y: Tensor, k: Tensor, x: Tensor, rho) -> Tensor:
    r""":math:`\operatorname{argmin}_z \|k * z - y\|^2 + \rho\|z - x\|^2` for the circular
    convolution (module docstring), in closed form through the DFT.

    ``y`` and ``x``: ``(..., H, W)``, same shape. ``k``: one kernel ``(kh, kw)`` for all, or one
    per sample ``(N, kh, kw)`` for ``y`` of shape ``(N, C, H, W)``. ``rho``: a positive number or
    a tensor broadcastable to ``(..., 1, 1)``. Computed in ``y``'s dtype.
    """
    if x.shape != y.shape:
        raise ValueError(f"fft_deconv: x {tuple(x.shape)} and y {tuple(y.shape)} differ")
    k_hat = otf(torch.as_tensor(k).to(y), y.shape[-2:])
    if k_hat.ndim == 3 and y.ndim == 4:
        k_hat = k_hat[:, None]  # one kernel per sample, shared by its channels
    rho = torch.as_tensor(rho, dtype=y.dtype, device=y.device)
    num = k_hat.conj() * torch.fft.rfft2(y) + rho * torch.fft.rfft2(x)
    den = k_hat.real**2 + k_hat.imag**2 + rho
    return torch.fft.irfft2(num / den, s=y.shape[-2:])


class ProxyNet(Precision, nn.Module):
    """:math:`H_\\theta`: ``y (N, 1, H, W) → σ̂ (N, 1, H, W) ≥ 0`` (module docstring)."""

    def __init__(self, width: int = 16, layers: int = 4, bias: float = PROXY_BIAS) -> None:
        super().__init__()
        if width < 1 or layers < 2:
            raise ValueError(f"ProxyNet needs width ≥ 1 and layers ≥ 2, got {width}, {layers}")
        chans = [1] + [width] * (layers - 1) + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(chans)
        )
        self.reset_parameters(bias)

    @torch.no_grad()
    def reset_parameters(self, bias: float = PROXY_BIAS) -> None:
        """He-normal weights and zero biases, the first layer's filters made zero-sum, the last
        layer's weights zero and its bias ``bias`` (σ̂ starts at the constant ``bias`` > 0).

        The noise (σ of a few %) is a tiny signal beside the image. With torch's default init it
        shrinks ~2.4× per layer and drowns in biases of ±1/3, and a filter with a non-zero sum
        mostly passes the intensity: for some seeds the proxy then stayed at a constant σ̂
        (no correlation with σ after 800 steps). Zero-sum first filters see noise and edges from
        the start. A random last layer starts σ̂ far from σ, and the first Adam steps then drove
        its input negative everywhere: the last ReLU died (σ̂ ≡ 0, no gradient). Measured on the
        tiny run of tests/test_guidance.py: with this init, seed indices 0–3 all learn."""
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        first = self.convs[0].weight
        first -= first.mean(dim=(-2, -1), keepdim=True)
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.constant_(self.convs[-1].bias, bias * SIGMA_SCALE)

    def forward(self, y: Tensor) -> Tensor:
        h = y * SIGMA_SCALE
        with self.autocast(y.device):
            for conv in self.convs:
                h = F.relu(conv(h))  # after the last layer too: σ̂ ≥ 0
        return h.to(y.dtype) / SIGMA_SCALE


class Denoiser(Precision, nn.Module):
    """A residual predictor of dilated 3×3 convolutions: ``(N, in_channels, H, W) →
    (N, 1, H, W)``; the stage subtracts it from its input image."""

    def __init__(self, kind: str = "tiny", width: int = 16, in_channels: int = 2) -> None:
        super().__init__()
        if kind not in DILATIONS:
            raise ValueError(f"unknown denoiser {kind!r} (known: {', '.join(DILATIONS)})")
        if width < 1 or in_channels < 1:
            raise ValueError(f"Denoiser needs width, in_channels ≥ 1: {width}, {in_channels}")
        self.kind = kind
        dil = DILATIONS[kind]
        chans = [in_channels] + [width] * (len(dil) - 1) + [1]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=d, dilation=d)
            for a, b, d in zip(chans[:-1], chans[1:], dil, strict=True)
        )

    def forward(self, inp: Tensor) -> Tensor:
        h = inp
        last = len(self.convs) - 1
        with self.autocast(inp.device):  # the FFT deconvolution around it stays float32
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < last:
                    h = F.relu(h)
        return h.to(inp.dtype)


class HQSNet(nn.Module):
    r""":math:`A_\omega`: K unrolled HQS stages (module docstring). ``rho`` is a buffer, so a
    checkpoint carries its schedule."""

    def __init__(
        self, rhos: Sequence[float], width: int = 16, denoiser: str = "tiny", guided: bool = True
    ) -> None:
        super().__init__()
        if len(rhos) < 1 or min(rhos) <= 0:
            raise ValueError(f"HQSNet needs at least one positive ρ, got {list(rhos)}")
        self.guided = guided
        self.register_buffer("rho", torch.tensor([float(r) for r in rhos], dtype=torch.float64))
        self.denoisers = nn.ModuleList(Denoiser(denoiser, width, 2 if guided else 1) for _ in rhos)

    @property
    def stages(self) -> int:
        return len(self.denoisers)

    def forward(self, y: Tensor, kernel: Tensor, sigma: Tensor | None = None) -> Tensor:
        """``y`` (N, 1, H, W), ``kernel`` (kh, kw) or (N, kh, kw), ``sigma`` (N, 1, H, W) when
        guided (None otherwise) → :math:`x_K` (N, 1, H, W)."""
        if self.guided and sigma is None:
            raise ValueError("a guided HQSNet needs the σ map")
        if not self.guided and sigma is not None:
            raise ValueError("an unguided HQSNet (variant none) takes no σ map")
        kernel = torch.as_tensor(kernel).to(y)
        x = y
        for rho, net in zip(self.rho, self.denoisers, strict=True):
            z = fft_deconv(y, kernel, x, rho.to(y.dtype))
            x = z - net(torch.cat([z, SIGMA_SCALE * sigma.to(z)], 1) if self.guided else z)
        return x


class GuidanceNet(nn.Module):
    """The trained part: the proxy (None for variant ``none``), the HQS net and the σ̂ floor
    ``sigma_floor`` of the weighting (a buffer)."""

    def __init__(
        self,
        rhos: Sequence[float],
        width: int = 16,
        denoiser: str = "tiny",
        guided: bool = True,
        sigma_floor: float = 1e-3,
        proxy_width: int | None = None,
    ) -> None:
        super().__init__()
        if sigma_floor <= 0:
            raise ValueError(f"sigma_floor must be positive, got {sigma_floor}")
        self.proxy = ProxyNet(proxy_width or width) if guided else None
        self.hqs = HQSNet(rhos, width, denoiser, guided)
        self.register_buffer("sigma_floor", torch.tensor(float(sigma_floor), dtype=torch.float64))

    @property
    def guided(self) -> bool:
        return self.proxy is not None

    def sigma(self, y: Tensor) -> Tensor:
        """σ̂ = H_θ(y), ``(N, 1, H, W)``."""
        if self.proxy is None:
            raise ValueError("this net has no proxy (variant none): no σ̂")
        return self.proxy(y)

    def forward(self, y: Tensor, kernel: Tensor, sigma: Tensor | None = None) -> Tensor:
        """:math:`x_K` of ``y`` with σ̂ = ``sigma`` if given, else the proxy's."""
        if self.guided and sigma is None:
            sigma = self.proxy(y)
        return self.hqs(y, kernel, sigma)

    def architecture(self) -> dict:
        first = self.hqs.denoisers[0].convs[0]
        return {
            "guided": self.guided,
            "denoiser": self.hqs.denoisers[0].kind,
            "width": int(first.out_channels),
            "stages": self.hqs.stages,
            "rho": [float(r) for r in self.hqs.rho],
            "sigma_floor": float(self.sigma_floor),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> GuidanceNet:
        """A net shaped after ``state``: guided if it has proxy weights, width and input channels
        from the first denoiser's first convolution, stages from the ρ schedule, the denoiser
        from its number of convolutions."""
        try:
            rhos = [float(r) for r in state["hqs.rho"]]
            first = state["hqs.denoisers.0.convs.0.weight"]
            layers = sum(
                1 for k in state if k.startswith("hqs.denoisers.0.convs.") and k.endswith("weight")
            )
            guided = "proxy.convs.0.weight" in state
            proxy_width = int(state["proxy.convs.0.weight"].shape[0]) if guided else None
            floor = float(state["sigma_floor"])
        except (KeyError, AttributeError, IndexError, TypeError) as exc:
            raise ValueError(f"not a GuidanceNet state dict (missing {exc})") from None
        kinds = {len(d): name for name, d in DILATIONS.items()}
        if layers not in kinds:
            raise ValueError(f"not a GuidanceNet state dict ({layers} denoiser convolutions)")
        net = cls(rhos, int(first.shape[0]), kinds[layers], guided, floor, proxy_width)
        if int(first.shape[1]) != (2 if guided else 1):
            raise ValueError("not a GuidanceNet state dict (denoiser input channels)")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"not a GuidanceNet state dict ({exc})") from None
        return net


def load_guidance(path, map_location: str | torch.device = "cpu") -> GuidanceNet:
    """A :class:`GuidanceNet` from ``models/guidance/<variant>/seed-<k>.pt`` (a state dict) or a
    training checkpoint (its ``state_dict``), in eval mode; ``torch.load(weights_only=True)``."""
    from pipeline.checkpoint import state_dict_of

    state = state_dict_of(path, map_location)
    try:
        return GuidanceNet.from_state_dict(state).to(map_location).eval()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
