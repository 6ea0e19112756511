"""Every table of the page beside it, for papers: ``reports/tables/<name>.csv`` and
``<name>.tex`` (pandas ``to_latex``: booktabs rules, text escaped for LaTeX), and
``reports/leaderboard.csv``. Pure functions of the tables; the writer builds the folder in a
temporary sibling and swaps it in, so a failure leaves the previous folder whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic_dir, write_bytes


@dataclass(frozen=True)
class Export:
    name: str  # file stem (checked by pipeline.report.sections.NAME)
    title: str
    table: pd.DataFrame
    digits: int = 3


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with floats in full precision (repr), NaN empty, Unix line ends."""
    return df.to_csv(index=False, lineterminator="\n", float_format=None).encode("utf-8")


def latex(df: pd.DataFrame, digits: int = 3, caption: str = "") -> str:
    """A booktabs ``tabular`` of ``df``: floats with ``digits`` decimals, NaN as ``--``, every
    text cell and header escaped for LaTeX."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].map({True: "yes", False: "no"})
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = [("--" if not np.isfinite(v) else f"{v:.{digits}f}") for v in out[c]]
        else:
            out[c] = out[c].map(lambda v: "" if v is None else str(v))
    out.columns = [str(c) for c in out.columns]
    return out.to_latex(index=False, escape=True, caption=tex_escape(caption) or None)


TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
       "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def tex_escape(s: str) -> str:
    """Text for LaTeX: its ten special characters escaped."""
    return "".join(TEX.get(ch, ch) for ch in str(s))


def write_tables(exports: list[Export], out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/<name>.csv`` and ``.tex`` for every export, swapped in as one folder."""
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        for e in exports:
            (tmp / f"{e.name}.csv").write_bytes(csv_bytes(e.table))
            (tmp / f"{e.name}.tex").write_text(latex(e.table, e.digits, e.title), encoding="utf-8")
    return out


def write_images(images: dict[str, bytes], out_dir: str | os.PathLike) -> Path:
    """The page's external images (none when it embeds them) as one folder."""
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        for name, data in sorted(images.items()):
            (tmp / name).write_bytes(data)
    return out


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    write_bytes(path, csv_bytes(df))
