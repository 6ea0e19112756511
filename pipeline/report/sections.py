"""A report section that a learned method adds (``Method.report_sections``).

The report renders every section the methods present in the results return, in registry order,
through the template it names (``pipeline/report/templates/<template>``; the generic
``section.html.j2`` shows a text, a table and a figure) and writes its table beside the page as
CSV and LaTeX (``reports/tables/<name>.csv|.tex``). The report itself never looks at a method's
name: what a method wants to show is its own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Section:
    """``name``: the section's id on the page and the stem of its exported files (lower-case
    letters, digits, ``-`` and ``_``); ``table``: a tidy table whose ``columns`` (name →
    header) are shown, numbers with ``digits`` decimals (default 3); ``figure``: PNG bytes."""

    name: str
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    columns: dict[str, str] = field(default_factory=dict)
    digits: dict[str, int] = field(default_factory=dict)
    figure: bytes | None = None
    caption: str = ""
    template: str = "section.html.j2"

    def __post_init__(self):
        if not NAME.fullmatch(self.name):
            raise ValueError(
                f"report section name {self.name!r}: use lower-case letters, digits, '-', '_'"
            )
        if self.table is not None:
            missing = [c for c in self.columns if c not in self.table.columns]
            if missing:
                raise ValueError(f"report section {self.name!r}: no column(s) {missing}")
