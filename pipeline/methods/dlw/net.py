r"""DLWnet, the weight network of DLW (Rui, Cao, Zhao, Meng, Ng, arXiv 2301.06081; docs/science.md).

The noisy image ``Y`` (B, C, H, W) enters as a one-channel volume (B, 1, C, H, W). ``depth``
blocks of a spatial (1, 3, 3) and a spectral (3, 1, 1) convolution, each followed by a ReLU,
then a (3, 3, 3) convolution to one channel give scores :math:`h_\theta(Y)`; per sample

.. math:: w = N \cdot \operatorname{softmax}(\operatorname{vec}(h_\theta(Y))) + 10^{-4},
          \qquad N = C H W,

so the weights are positive and their mean is ≈ 1, the scale of the unweighted model (w = 1).
Padding keeps the size. The paper uses 64 filters; ``width`` and ``depth`` are parameters.

Layouts and precision. The same parameters (one state-dict layout) are evaluated in one of four
exact layouts, equal up to floating-point summation order (``tests/test_train_step_layouts.py``):
``separable`` (the (1, 3, 3) and (3, 1, 1) kernels as 2-D convolutions over reshaped volumes),
``separable_cl`` (the same on channels-last activations, where every reshape is a view),
``conv3d`` (the paper's ``Conv3d`` layers) and ``conv3d_cl`` (the same in ``channels_last_3d``).
``auto`` is :func:`resolve_layout`'s fixed rule (``separable_cl``, measured fastest), so a
trial's weights do not depend on a timing race. ``precision="bf16"`` runs the
convolutions under ``torch.autocast(bfloat16)``; the softmax normalisation stays in float32
(``benchmarks/train_roofline.py`` measures the speed and the quality of both).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pipeline.methods.precision import PRECISIONS, Precision, native_bf16, resolve_precision

__all__ = [
    "LAYOUTS",
    "PRECISIONS",
    "WEIGHT_FLOOR",
    "DLWNet",
    "load_dlwnet",
    "native_bf16",
    "normalise_weights",
    "resolve_layout",
    "resolve_precision",
]

WEIGHT_FLOOR = 1e-4
LAYOUTS = ("auto", "separable", "separable_cl", "conv3d", "conv3d_cl")
# Forward + backward of the net, float32, wall clock (benchmarks/train_roofline.py and a
# per-layer torch.profiler run; a 2-core AVX-512 machine):
#   32×32×31, batch 4, width 16 (a default trial), 1 thread: separable 0.34 s, separable_cl
#   0.12 s, conv3d_cl 0.30 s; 2 threads: separable 0.21 s, separable_cl 0.07 s;
#   64×64×31, batch 10, width 64 (the paper's), 2 threads: separable_cl 7.1 s (bf16 3.1 s)
#   before its spectral weight gradient by matrix products (_SpectralConv), 6.0–6.3 s after
#   (bf16 2.9–3.1 s; the roofline's net forward + backward); conv3d 18.9 s, separable 27.9 s
#   (1 thread: separable_cl 15.9 s before its in-place ReLUs, NHWC first layer and 2-D head,
#   conv3d 27.6 s, conv3d_cl 33.8 s).
# separable_cl is the fastest everywhere measured, so ``auto`` is separable_cl.


def resolve_layout(layout: str) -> str:
    """The layout ``auto`` stands for: ``separable_cl``, measured fastest at the default and the
    paper's widths, one and two threads, float32 and bfloat16 (comment above). A fixed rule,
    not a timing race, so a trial's weights never depend on the machine's load."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return "separable_cl" if layout == "auto" else layout


class _InplaceReLU(torch.autograd.Function):
    """ReLU that overwrites its input and, in backward, the incoming gradient: the same values
    as ``F.relu`` without two fresh activation-sized tensors. Only for an input no one else
    reads (a convolution's output) whose output has one consumer (the next convolution), so
    the gradient handed back is that consumer's own fresh tensor."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x.clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        # relu's own backward, aten::threshold_backward, written into ``grad``.
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


class _SpectralConv(torch.autograd.Function):
    """The (3, 1) spectral convolution of a channels-last ``(B, F, C, H·W)`` image, with the
    weight gradient as three matrix products over the bands' shifted views instead of oneDNN's
    (same values up to summation order). A (3, 1) kernel gives oneDNN's weight gradient a
    reduction over ``B·C·H·W`` rows of only ``3F`` columns, which it runs at about half its GEMM
    rate; ``torch.bmm`` over the batch runs it at ≈ 0.7 (``benchmarks/dlw_layers.py``). The
    forward pass and the input gradient stay oneDNN's. Used where it was measured faster: float32
    on a CPU, ``width ≥ SPECTRAL_GEMM_WIDTH``."""

    @staticmethod
    def forward(ctx, v: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(v, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(v, weight, bias, padding=(1, 0))

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        v, weight = ctx.saved_tensors
        g = g.contiguous(memory_format=torch.channels_last)
        grad_v = None
        if ctx.needs_input_grad[0]:
            (grad_v, _, _) = torch.ops.aten.convolution_backward(
                g, v, weight, [weight.shape[0]], [1, 1], [1, 0], [1, 1], False, [0, 0], 1,
                [True, False, False],
            )  # fmt: skip
        if not ctx.needs_input_grad[1]:
            grad_b = g.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
            return grad_v, None, grad_b
        b, f_in = v.shape[:2]
        f_out = g.shape[1]
        gm, vm = g.permute(0, 2, 3, 1), v.permute(0, 2, 3, 1)  # (B, C, P, F), contiguous
        # out[c] = Σ_k W[:, :, k] v[c + k − 1]: W_k pairs g[c] with v[c + k − 1].
        pairs = ((gm[:, 1:], vm[:, :-1]), (gm, vm), (gm[:, :-1], vm[:, 1:]))
        grad_w = torch.stack(
            [
                torch.bmm(a.reshape(b, -1, f_out).transpose(1, 2), x.reshape(b, -1, f_in)).sum(0)
                for a, x in pairs
            ],
            dim=2,
        ).unsqueeze(-1)  # (F_out, F_in, 3, 1)
        grad_b = gm.sum((0, 1, 2)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_v, grad_w, grad_b


# The width from which _SpectralConv's weight gradient beats oneDNN's (benchmarks/dlw_layers.py).
SPECTRAL_GEMM_WIDTH = 32


def _relu(x: Tensor) -> Tensor:
    return _InplaceReLU.apply(x) if torch.is_grad_enabled() else x.clamp_min_(0)


def normalise_weights(h: Tensor) -> Tensor:
    r"""``(B, C, H, W)`` scores → weights :math:`N\,\mathrm{softmax}(\mathrm{vec}\,h) + 10^{-4}`,
    one softmax per sample."""
    b = h.shape[0]
    n = h[0].numel()
    return (n * torch.softmax(h.reshape(b, -1), dim=1)).reshape(h.shape) + WEIGHT_FLOOR


class DLWNet(Precision, nn.Module):
    """``forward(y: (B, C, H, W)) -> w: (B, C, H, W)``, the normalised weight map.

    Parameters are stored as :class:`torch.nn.Conv3d` layers (the paper's architecture, and the
    state-dict layout of every checkpoint) whatever the ``layout`` (module docstring) and
    ``precision`` (``fp32``, ``bf16``, ``auto``), which are attributes, not state.
    """

    def __init__(
        self, width: int = 16, depth: int = 3, layout: str = "auto", precision: str = "fp32"
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"DLWNet needs width ≥ 1 and depth ≥ 1, got {width}, {depth}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.width, self.depth = width, depth
        self.layout, self.precision = layout, precision
        self.spatial = nn.ModuleList()
        self.spectral = nn.ModuleList()
        for i in range(depth):
            self.spatial.append(
                nn.Conv3d(1 if i == 0 else width, width, (1, 3, 3), padding=(0, 1, 1))
            )
            self.spectral.append(nn.Conv3d(width, width, (3, 1, 1), padding=(1, 0, 0)))
        self.head = nn.Conv3d(width, 1, (3, 3, 3), padding=1)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], **options: str) -> DLWNet:
        """A net shaped after ``state`` (width and depth read from the tensor shapes);
        ``options``: ``layout``, ``precision``."""
        try:
            depth = sum(1 for k in state if k.startswith("spatial.") and k.endswith(".weight"))
            width = int(state["head.weight"].shape[1])
        except (KeyError, AttributeError, IndexError) as exc:
            raise ValueError(f"not a DLWNet state dict (missing {exc})") from None
        net = cls(width, depth, **options)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"not a DLWNet state dict ({exc})") from None
        return net

    def resolved(self, device: torch.device | None = None) -> tuple[str, str]:
        """``(layout, precision)`` that ``auto`` stands for on ``device`` (default: the
        parameters')."""
        device = self.head.weight.device if device is None else device
        return resolve_layout(self.layout), resolve_precision(self.precision, device)

    def scores(self, y: Tensor) -> Tensor:
        """The unnormalised scores :math:`h_\\theta(Y)`, ``(B, C, H, W)``, float32 (under
        ``bf16`` the convolutions run in bfloat16 and the scores are cast back)."""
        if y.ndim != 4:
            raise ValueError(f"DLWNet needs y of shape (B, C, H, W), got {tuple(y.shape)}")
        layout = resolve_layout(self.layout)
        with self.autocast(y.device):
            if layout == "separable":
                h = self._separable(y)
            elif layout == "separable_cl":
                h = self._separable_cl(y)
            else:
                h = self._conv3d(y, channels_last=layout == "conv3d_cl")
        return h.float()

    def _conv3d(self, y: Tensor, channels_last: bool) -> Tensor:
        """The paper's ``Conv3d`` layers, optionally in ``channels_last_3d``: each call copies
        the weights into that format (differentiable, a few kB), so the parameters and the
        checkpoint keep their default strides. With one input channel both formats have the
        same strides and oneDNN keeps the default one, so the first output is converted once;
        the later layers follow it."""
        fmt = torch.channels_last_3d if channels_last else torch.contiguous_format

        def conv(layer: nn.Conv3d, z: Tensor) -> Tensor:
            weight = layer.weight.contiguous(memory_format=fmt)
            out = F.conv3d(z, weight, layer.bias, padding=layer.padding)
            return out.contiguous(memory_format=fmt)  # a no-op after the first layer

        z = y.unsqueeze(1)
        for spatial, spectral in zip(self.spatial, self.spectral, strict=True):
            z = F.relu(conv(spectral, F.relu(conv(spatial, z))))
        return conv(self.head, z)[:, 0]

    def _separable_cl(self, y: Tensor) -> Tensor:
        """The separable path on channels-last activations. The memory of a ``channels_last_3d``
        volume (B, F, C, H, W) is [B][C][H][W][F], which is both the NHWC memory of the
        (B·C, F, H, W) stack of bands the spatial kernel runs on and that of the
        (B, F, C, H·W) image the spectral kernel runs on: every reshape between them is a view,
        and every convolution takes oneDNN's NHWC kernels.

        Further exact rewrites, each timed against what it replaces at the paper's size
        (64×64×31, batch 10, width 64, 2 threads; ``benchmarks/dlw_layers.py``, forward +
        backward): the ReLUs work in place, forward and backward (:class:`_InplaceReLU`; a ReLU
        on a 325 MB activation 0.10 s instead of 0.24 s: fresh tensors of that size cost page
        faults); the first layer's zero second channel below (0.15 s instead of 0.67 s); the
        (3, 3, 3) head, a ``Conv3d`` with one output channel that oneDNN runs at a few GFLOP/s,
        is a 2-D convolution of every band with the three spectral slices of its kernel as three
        output channels, summed along the bands (0.53 s instead of 0.96 s); from width
        :data:`SPECTRAL_GEMM_WIDTH` the spectral kernels' weight gradient is
        :class:`_SpectralConv`'s (a layer 0.77 s instead of 1.69 s)."""
        cl = torch.channels_last
        b, c, h, w = y.shape
        # One input channel: NCHW and NHWC have the same strides and oneDNN answers in NCHW, so
        # the first output would need a 325 MB conversion, forward and backward. A zero second
        # channel (input and kernel) makes the input unambiguously NHWC, and the output with it.
        z = y.reshape(b * c, 1, h, w)
        z = torch.cat([z, torch.zeros_like(z)], 1).contiguous(memory_format=cl)
        for spatial, spectral in zip(self.spatial, self.spectral, strict=True):
            weight = spatial.weight[:, :, 0]
            if z.shape[1] != weight.shape[1]:  # the first layer: the zero channel's kernel
                weight = torch.cat([weight, torch.zeros_like(weight)], 1)
            weight = weight.contiguous(memory_format=cl)
            z = _relu(F.conv2d(z, weight, spatial.bias, padding=1).contiguous(memory_format=cl))
            f = z.shape[1]
            v = z.permute(0, 2, 3, 1).reshape(b, c, h * w, f).permute(0, 3, 1, 2)
            weight = spectral.weight[..., 0].contiguous(memory_format=cl)
            if (
                f >= SPECTRAL_GEMM_WIDTH
                and torch.is_grad_enabled()
                and v.device.type == "cpu"
                and v.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")
            ):
                v = _SpectralConv.apply(v, weight, spectral.bias)
            else:
                v = F.conv2d(v, weight, spectral.bias, padding=(1, 0))
            v = _relu(v.contiguous(memory_format=cl))
            z = v.permute(0, 2, 3, 1).reshape(b * c, h, w, f).permute(0, 3, 1, 2)
        # head(z)[c] = Σ_k conv2d(z[c + k − 1], W[:, :, k]) + bias, k = 0, 1, 2 (zero bands
        # outside): one conv2d with the three slices W[:, :, k] as output channels.
        weight = self.head.weight[0].transpose(0, 1).contiguous(memory_format=cl)  # (3, F, 3, 3)
        o = F.conv2d(z, weight, padding=1).reshape(b, c, 3, h, w)
        o = F.pad(o, (0, 0, 0, 0, 0, 0, 1, 1))  # a zero band before the first and after the last
        return o[:, :-2, 0] + o[:, 1:-1, 1] + o[:, 2:, 2] + self.head.bias

    def _separable(self, y: Tensor) -> Tensor:
        """The (1, 3, 3) and (3, 1, 1) kernels as 2-D convolutions over reshaped volumes."""
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
        """:meth:`scores` with plain ``conv3d`` layers in float32: the paper's computation (for
        tests)."""
        return self._conv3d(y, channels_last=False)


def load_dlwnet(path, map_location: str | torch.device = "cpu") -> DLWNet:
    """A :class:`DLWNet` from ``models/dlw/<set>/seed-<k>.pt`` (a state dict) or from a training
    checkpoint (its ``state_dict`` entry), in eval mode; ``torch.load(weights_only=True)``."""
    from pipeline.checkpoint import state_dict_of

    state = state_dict_of(path, map_location)
    try:
        return DLWNet.from_state_dict(state).eval()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
