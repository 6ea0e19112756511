"""View models of the page: tables as columns, rows and cells of plain strings and numbers.

The templates (``pipeline/report/templates``, autoescaped) turn these into HTML; nothing here
writes markup. A :class:`Cell` holds the text shown, the raw sort value (``data-v``), a CSS
class, a tooltip, an optional internal link and an optional background colour; a :class:`Row`
holds its cells and the ``data-*`` attributes the page's filters read (``task``, ``case``,
``restorer``, ``method``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

ARROW = {"higher": "↑", "lower": "↓"}
LABEL = {"mpsnr": "MPSNR", "mssim": "MSSIM", "sam": "SAM", "ergas": "ERGAS"}
DIGITS = {"mpsnr": 2, "mssim": 4, "sam": 4, "ergas": 2}
HEX = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Cell:
    text: str
    v: str | None = None  # sort value (data-v): a number in full precision, text, or "" for NaN
    cls: str = ""
    title: str = ""
    href: str = ""  # an internal link ("#id") around the text
    link_cls: str = ""
    colour: str = ""  # background, "#rrggbb" only
    sub: str = ""  # a muted suffix (e.g. "± –")
    attrs: dict[str, str] = field(default_factory=dict)  # data-* of the cell
    span: int = 1  # colspan

    def __post_init__(self):
        if self.colour and not HEX.fullmatch(self.colour):
            raise ValueError(f"cell colour {self.colour!r} is not #rrggbb")
        if self.href and not self.href.startswith("#"):
            raise ValueError(f"cell link {self.href!r} is not internal")


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    attrs: dict[str, str] = field(default_factory=dict)  # data-* of the row (filter keys)
    cls: str = ""
    head: bool = False  # a header row inside the body (a group label)


@dataclass(frozen=True)
class Column:
    label: str
    cls: str = ""
    title: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    span: int = 1


@dataclass(frozen=True)
class Table:
    columns: list[Column]
    rows: list[Row]
    id: str = ""
    cls: str = "sortable"
    groups: list[Column] = field(default_factory=list)  # an optional header row above columns


def fin(x) -> bool:
    try:
        return x is not None and x is not pd.NA and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x) -> float:
    return float(x) if fin(x) else math.nan


def fmt(x, digits: int = 2, sign: bool = False) -> str:
    if not fin(x):
        return "–"
    return f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"


def fmt_p(p) -> str:
    if not fin(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def sort_value(v: Any) -> str:
    """The ``data-v`` of a cell: text as is, a number in full precision, NaN empty."""
    if isinstance(v, str):
        return v
    return format(float(v), ".12g") if fin(v) else ""


def text(s: Any, **kw) -> Cell:
    """A text cell sorted by its text."""
    return Cell(str(s), v=str(s), cls=kw.pop("cls", "l"), **kw)


def number(x: Any, digits: int = 2, sign: bool = False, **kw) -> Cell:
    """A number cell sorted by value."""
    return Cell(fmt(x, digits, sign), v=sort_value(num(x)), **kw)


def slug(s: Any) -> str:
    """An HTML id fragment: every character but ASCII letters and digits becomes ``-``."""
    return "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in str(s))


def case_anchor(case: str) -> str:
    return f"case-{slug(case)}"


def task_anchor(task: str) -> str:
    return f"task-{slug(task)}"


def gallery_anchor(case: str, image_id: str, restorer: str, weighting: str) -> str:
    """The id of a gallery figure: a restoration, or with restorer ``weight`` a weight map."""
    return f"g-{slug(case)}--{slug(image_id)}--{slug(restorer)}--{slug(weighting)}"


def method_tokens(weighting: str, weighting_method: str, restorer_method: str) -> str:
    """The ``data-method`` of a row: the methods it involves, ``builtin`` for built-in parts."""
    tokens = []
    if weighting != "none":
        tokens.append(weighting_method or "builtin")
    if restorer_method:
        tokens.append(restorer_method)
    elif weighting == "none":
        tokens.append("builtin")
    return " ".join(dict.fromkeys(tokens))


def frame_table(
    df: pd.DataFrame,
    columns: dict[str, str],
    digits: dict[str, int] | None = None,
    table_id: str = "",
) -> Table:
    """A plain sortable table of the ``columns`` (name → header) of ``df``: strings as text,
    numbers with ``digits`` (default 3) decimals. For the methods' own sections."""
    digits = digits or {}
    cols = [Column(h, "l" if not pd.api.types.is_numeric_dtype(df[c]) else "") for c, h in
            columns.items()]  # fmt: skip
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in columns:
            v = r[c]
            if pd.api.types.is_numeric_dtype(df[c]) and not isinstance(v, bool):
                cells.append(number(v, digits.get(c, 3)))
            else:
                cells.append(text("" if v is None else v))
        rows.append(Row(cells))
    return Table(cols, rows, id=table_id)
