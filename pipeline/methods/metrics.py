"""Torch-side scores the trainers validate with (the evaluation's own are in
:mod:`pipeline.evaluate.metrics`)."""

from __future__ import annotations

import torch

__all__ = ["psnr"]


def psnr(x: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (peak 1) of (N, ...) tensors, ``(N,)``."""
    mse = ((x - clean) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-20))
