"""The ``degrade`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.degrade.registry import Case
from pipeline.schema import require

DEFAULT_SUITE = ("noniid", "stripe", "deadline", "impulse", "mixture")


@dataclass(frozen=True)
class DegradeParams:
    # Fixed evaluation sets are made for these splits (train noise is drawn on the fly).
    splits: list[Literal["val", "test"]] = field(default_factory=lambda: ["val", "test"])
    cases: list[Case] = field(
        default_factory=lambda: [Case.from_param(n, "degrade.cases") for n in DEFAULT_SUITE]
    )
    # Test image shown in reports/figures/degradations.png (null: the first test image).
    figure_image: str | None = None

    def check(self, where: str) -> None:
        require(len(self.cases) > 0, f"{where}.cases", [], "needs at least one case")
        labels = [c.label for c in self.cases]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        require(not dupes, f"{where}.cases", dupes, "case labels must be unique")
        require(
            len(set(self.splits)) == len(self.splits),
            f"{where}.splits",
            self.splits,
            "splits listed twice",
        )
