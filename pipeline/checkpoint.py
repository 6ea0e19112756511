"""Checkpoints that load with ``torch.load(weights_only=True)`` (docs/conventions.md).

A checkpoint holds plain tensors, numbers, strings, lists and dicts only — no pickled classes —
so loading an untrusted file cannot run code. Every reader turns a truncated or foreign file into
a :class:`ValueError` naming it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from pipeline.io import write_bytes

__all__ = ["load_checkpoint", "save_checkpoint", "state_dict_of"]


def save_checkpoint(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a missing, truncated or foreign file → a
    :class:`ValueError` (or :class:`FileNotFoundError`) naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zip errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({reason})") from exc


def state_dict_of(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The weights in ``path``: a state dict (``models/<method>/<variant>/seed-<k>.pt``) or a
    training checkpoint (its ``state_dict`` entry); anything else is a :class:`ValueError`."""
    obj = load_checkpoint(path, map_location)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint of weights (holds {type(obj).__name__})")
    return state
