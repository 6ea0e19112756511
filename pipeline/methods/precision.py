"""The arithmetic precision of a learned method's nets: ``fp32``, ``bf16`` or ``auto``.

Every method's train section has ``precision`` (``pipeline/methods/params.py``). Under ``bf16``
a net's convolutions run inside ``torch.autocast(bfloat16)`` and its output is cast back to
float32, so everything around it — the variational solvers (DLW's unrolled ADMM, the FFT
deconvolution of hyper-guidance, the gradient-descent fixed point of regularising gradients,
ALR's restoration), the losses, the weight normalisation — stays in float32 (float64 where it
already is). ``auto`` is ``bf16`` only where the hardware multiplies bfloat16 natively
(:func:`native_bf16`), where ``benchmarks/train_roofline.py`` measured the nets' steps faster
in bfloat16. The parameters, the optimiser and the checkpoints stay float32 whatever the
precision.

A net that honours the setting derives from :class:`Precision`; :func:`set_precision` sets it
on every such module of a model (it is an attribute, not state: a checkpoint loads in either).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
from torch import nn

from pipeline.methods.params import PRECISIONS

__all__ = ["PRECISIONS", "Precision", "native_bf16", "resolve_precision", "set_precision"]


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether the hardware multiplies bfloat16 natively: AVX-512-BF16 or AMX on an x86 CPU
    (read from ``/proc/cpuinfo``; ``False`` where it cannot be read), compute capability ≥ 8.0
    on CUDA."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
    if device_type != "cpu":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``fp32`` or ``bf16``; ``auto`` is ``bf16`` only where :func:`native_bf16` holds."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device).type) else "fp32"


class Precision:
    """Mixin of a net whose convolutions honour ``precision`` (class default ``fp32``)."""

    precision: str = "fp32"

    def autocast(self, device: torch.device):
        """The context the net's convolutions run in: bfloat16 autocast under ``bf16`` (the
        caller casts the net's output back with ``.float()``), nothing otherwise."""
        if resolve_precision(self.precision, device) != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device.type, torch.bfloat16)


def set_precision(model, precision: str):
    """Set ``precision`` on every :class:`Precision` module of ``model``; returns ``model``. A
    trained part that is not a module (e.g. a method whose part is a plain tensor) has no net
    to set and comes back as it is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, Precision):
                m.precision = precision
    return model
