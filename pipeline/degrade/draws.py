"""Random parameters of noise models: a fixed value, a choice from a list, or a uniform range.

In ``params.yaml`` a number is fixed (``sigma_255: 50``), a list is a uniform choice among its
values (``sigma_255: [10, 30, 50, 70]``, the test protocol's discrete draws), and
``{uniform: [low, high]}`` is continuous (``sigma_255: {uniform: [10, 70]}``, DLW's training
draws). So one noise model expresses both the protocol's cases and DLW's training noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.schema import ConfigError, fail


@dataclass(frozen=True)
class Draw:
    kind: Literal["fixed", "choice", "uniform"]
    values: tuple[float, ...]

    @classmethod
    def from_param(cls, value: Any, where: str = "value") -> Draw:
        if isinstance(value, Draw):
            return value
        if isinstance(value, bool):
            raise fail(where, value, "must be a number, a list of numbers or {uniform: [lo, hi]}")
        if isinstance(value, int | float):
            return cls("fixed", (_number(value, where),))
        if isinstance(value, list | tuple):
            if not value:
                raise fail(where, value, "a choice list must not be empty")
            return cls("choice", tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value)))
        if isinstance(value, dict) and set(value) == {"uniform"}:
            bounds = value["uniform"]
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise fail(f"{where}.uniform", bounds, "must be [low, high]")
            lo, hi = (_number(v, f"{where}.uniform[{i}]") for i, v in enumerate(bounds))
            if lo > hi:
                raise fail(f"{where}.uniform", list(bounds), "low must not exceed high")
            return cls("uniform", (lo, hi))
        if isinstance(value, dict) and set(value) == {"choice"}:
            return cls.from_param(list(value["choice"]), f"{where}.choice")
        raise fail(where, value, "must be a number, a list of numbers or {uniform: [lo, hi]}")

    def to_param(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return list(self.values)
        return {"uniform": list(self.values)}

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def sample(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        """``size`` independent draws (a 1-D float64 array; ``size=None`` gives one value)."""
        n = 1 if size is None else size
        if self.kind == "fixed":
            out = np.full(n, self.values[0], dtype=np.float64)
        elif self.kind == "choice":
            out = np.asarray(self.values, dtype=np.float64)[rng.integers(0, len(self.values), n)]
        else:
            # lo + (hi − lo) · U as two NumPy operations: the same numbers as rng.uniform, but no
            # compiler can contract them into a fused multiply-add (as C code may on CPUs with
            # FMA), so every machine draws identical values.
            lo, hi = self.values
            out = lo + (hi - lo) * rng.random(n)
        return out[0] if size is None else out

    def check_range(self, where: str, lo: float, hi: float) -> None:
        if self.low < lo or self.high > hi:
            raise fail(where, self.to_param(), f"values must lie in [{lo:g}, {hi:g}]")


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
        raise ConfigError(f"{where} = {v!r}: must be a finite number")
    return float(v)
