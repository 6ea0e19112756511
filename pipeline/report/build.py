"""The report as a pure function of ``reports/results.parquet`` and ``reports/gallery.parquet``:
:func:`build_report` computes the leaderboard table, the headline metrics and the HTML page;
:func:`write_report` writes them atomically. No clock, no randomness, no network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io import read_parquet_meta, write_bytes, write_json, write_parquet
from pipeline.report.leaderboard import (
    BETTER,
    GALLERY_COLUMNS,
    NO_WEIGHTING,
    REFERENCE,
    check_columns,
    first_seen,
    headline,
    leaderboard,
    weight_quality,
)
from pipeline.report.stats import TESTS

OUTS = ("leaderboard.parquet", "metrics.json", "index.html")
TEXT_COLUMNS = (
    "weighting",
    "weighting_method",
    "weighting_variant",
    "restorer",
    "restorer_method",
    "restorer_variant",
    "restorer_role",
    "case",
    "noise_model",
    "case_params",
    "image_id",
)


@dataclass(frozen=True)
class ReportOptions:
    # Two-sided confidence level of every interval.
    confidence: float = 0.95
    # Paired test against the reference: "t" (ttest_rel) or "sign-flip" (exact, n ≤ 12; t above).
    test: str = "t"
    # The weighting every gain and paired test compares with (same case and restorer).
    reference: str = REFERENCE
    # Gallery bands larger than this many pixels a side are block-averaged down for the page.
    gallery_max_px: int = 256

    @classmethod
    def from_section(cls, section: Any, where: str = "report") -> ReportOptions:
        """Options from the ``report`` params section (absent or null: the defaults)."""
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise ValueError(f"params.yaml: {where} must be a mapping, got {section!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(
                f"params.yaml: unknown key(s) {where}.{unknown}; known: {sorted(known)}"
            )
        opts = cls(**section)
        if not (isinstance(opts.confidence, float) and 0.0 < opts.confidence < 1.0):
            raise ValueError(
                f"params.yaml: {where}.confidence = {opts.confidence!r}: need 0 < c < 1"
            )
        if opts.test not in TESTS:
            raise ValueError(f"params.yaml: {where}.test = {opts.test!r}: use one of {list(TESTS)}")
        if not (isinstance(opts.reference, str) and opts.reference.strip()):
            raise ValueError(
                f"params.yaml: {where}.reference = {opts.reference!r}: need a weighting label "
                "(a non-empty string)"
            )
        if opts.reference == NO_WEIGHTING:
            raise ValueError(
                f"params.yaml: {where}.reference = {opts.reference!r}: that label marks restorers "
                "that take no weighting; use a weighting (e.g. 'unweighted')"
            )
        if not (isinstance(opts.gallery_max_px, int) and opts.gallery_max_px >= 8):
            raise ValueError(
                f"params.yaml: {where}.gallery_max_px = {opts.gallery_max_px!r}: need an int ≥ 8"
            )
        return opts

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Report:
    leaderboard: pd.DataFrame
    leaderboard_meta: dict[str, Any]
    metrics: dict[str, Any]
    html: str


def _read_parquet(path: str | os.PathLike, what: str) -> tuple[pd.DataFrame, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (run the evaluate stage first)")
    try:
        return pd.read_parquet(path), read_parquet_meta(path)
    except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
        raise ValueError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})"
        ) from None


def read_results(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """results.parquet and its ``dlw_bench`` metadata; errors name the file."""
    df, meta = _read_parquet(path, "results table")
    check_columns(df, str(path))
    return df, meta


def read_gallery(path: str | os.PathLike) -> pd.DataFrame:
    df, _ = _read_parquet(path, "gallery table")
    missing = [c for c in GALLERY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; the gallery needs {GALLERY_COLUMNS}"
        )
    return df


def normalise(results: pd.DataFrame) -> pd.DataFrame:
    """Label columns as plain strings, so grouping, sorting and escaping see one type."""
    out = results.copy()
    for col in TEXT_COLUMNS:
        out[col] = out[col].astype(str)
    return out


def check_reference(results: pd.DataFrame, reference: str) -> None:
    """A reference weighting that no row uses would leave every gain empty: an error that lists
    the weightings there are (a table with no weighted rows needs no reference)."""
    labels = sorted(set(results["weighting"].astype(str)) - {NO_WEIGHTING})
    if labels and reference not in labels:
        raise ValueError(
            f"report.reference = {reference!r} is no weighting of the results; they hold {labels}"
        )


def build_report(
    results: pd.DataFrame,
    gallery: pd.DataFrame | None,
    meta: dict[str, Any],
    options: ReportOptions | None = None,
) -> Report:
    from pipeline.report import charts
    from pipeline.report.gallery import gallery_html
    from pipeline.report.html import page

    options = options or ReportOptions()
    check_columns(results, "results")
    results = normalise(results)
    reference = options.reference
    check_reference(results, reference)
    lb = leaderboard(results, options.confidence, options.test, reference)
    cases = first_seen(results["case"])
    metrics = headline(lb, cases, reference)
    quality = weight_quality(lb, reference)
    weighted = lb["weighting"] != NO_WEIGHTING
    restorers = first_seen(lb.loc[weighted, "restorer"])
    plain = first_seen(lb.loc[~weighted, "restorer"])
    figures = {
        "heatmap": charts.transfer_heatmap(lb, cases, restorers, reference),
        "bars": charts.mpsnr_bars(lb, cases, restorers, plain),
        "scatter": charts.auc_vs_gain(quality, reference),
    }
    keys = ["case", "image_id", "restorer", "weighting"]
    mpsnr = {
        tuple(k): float(v) for k, v in results.groupby(keys, sort=True)["mpsnr"].mean().items()
    }
    noisy = {
        tuple(k): float(v)
        for k, v in results.groupby(["case", "image_id"], sort=True)["noisy_mpsnr"].mean().items()
    }
    gal = gallery_html(gallery, mpsnr, noisy, cases, options.gallery_max_px)
    html = page(
        lb=lb,
        metrics=metrics,
        results=results,
        meta=meta,
        quality=quality,
        charts=figures,
        gallery_html=gal,
        options=options.to_dict(),
    )
    lb_meta = {
        "stage": "report",
        "options": options.to_dict(),
        "better": BETTER,
        "unit": "image (seeds averaged per image first)",
        "results_meta": meta,
    }
    return Report(lb, lb_meta, metrics, html)


def write_report(report: Report, out_dir: str | os.PathLike = "reports") -> list[Path]:
    """``leaderboard.parquet``, ``metrics.json`` and ``index.html`` in ``out_dir``, each written
    to a temporary file and renamed, so a failure never leaves a half-written out."""
    out = Path(out_dir)
    paths = [out / name for name in OUTS]
    write_parquet(paths[0], report.leaderboard, report.leaderboard_meta)
    write_json(paths[1], report.metrics)
    write_bytes(paths[2], report.html.encode("utf-8"))
    return paths
