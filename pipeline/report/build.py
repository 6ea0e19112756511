"""The report as a pure function of ``reports/results.parquet`` and ``reports/gallery.parquet``:
:func:`build_report` computes the leaderboard table, the headline metrics, the overview (every
learned part × task and case), the methods' own sections and the page (Jinja2 templates in
``pipeline/report/templates``); :func:`write_report` writes them atomically. No clock, no
randomness, no network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io import read_parquet_meta, write_bytes, write_json, write_parquet
from pipeline.report.export import Export, write_csv, write_images, write_tables
from pipeline.report.leaderboard import (
    BETTER,
    GALLERY_COLUMNS,
    NO_WEIGHTING,
    REFERENCE,
    check_columns,
    first_seen,
    headline,
    leaderboard,
)
from pipeline.report.stats import TESTS

OUTS = ("leaderboard.parquet", "metrics.json", "index.html", "leaderboard.csv")
TABLES_DIR = "tables"
FIGURES_DIR = "figures/page"
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
    # The restorer the overview's restorer rows compare with (at the reference weighting).
    reference_restorer: str = "tv"
    # The page embeds its images while they total at most this many MiB; past it they are
    # written under reports/figures/page/ and linked relatively.
    inline_images_max_mb: float = 8.0

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
        if not (isinstance(opts.reference_restorer, str) and opts.reference_restorer.strip()):
            raise ValueError(
                f"params.yaml: {where}.reference_restorer = {opts.reference_restorer!r}: need a "
                "restorer name"
            )
        mb = opts.inline_images_max_mb
        if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 <= mb < 1e6:
            raise ValueError(
                f"params.yaml: {where}.inline_images_max_mb = {mb!r}: need a number ≥ 0 (MiB)"
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
    exports: list[Export] = field(default_factory=list)
    # The page's images written as files (empty when the page embeds them).
    images: dict[str, bytes] = field(default_factory=dict)
    overview: pd.DataFrame | None = None
    ranking: pd.DataFrame | None = None
    sentences: list[str] = field(default_factory=list)


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


def check_reference_restorer(results: pd.DataFrame, reference_restorer: str) -> None:
    """The overview's reference restorer must be in the results (an error lists those there)."""
    names = sorted(set(results["restorer"].astype(str)))
    if names and reference_restorer not in names:
        raise ValueError(
            f"report.reference_restorer = {reference_restorer!r} is no restorer of the results; "
            f"they hold {names}"
        )


def method_sections(results: pd.DataFrame, lb: pd.DataFrame, options: ReportOptions) -> list:
    """The sections of every registered method present in the results (registry order)."""
    from pipeline.methods.registry import METHODS
    from pipeline.report.sections import Section

    present = set(results["weighting_method"]) | set(results["restorer_method"])
    out = []
    for name, method in METHODS.items():
        if name not in present:
            continue
        for s in method.report_sections(results, lb, options):
            if not isinstance(s, Section):
                raise TypeError(f"method {name!r}: report_sections must return Section objects")
            out.append(s)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"report sections with the same name: {names}")
    return out


def build_report(
    results: pd.DataFrame,
    gallery: pd.DataFrame | None,
    meta: dict[str, Any],
    options: ReportOptions | None = None,
    templates: str | os.PathLike | None = None,
) -> Report:
    """Every table, figure and the page; ``templates`` replaces the template folder."""
    from pipeline.report import charts, overview
    from pipeline.report import page as P
    from pipeline.report.gallery import gallery_view
    from pipeline.report.images import ImageStore
    from pipeline.report.render import render, script_json
    from pipeline.report.view import frame_table

    options = options or ReportOptions()
    check_columns(results, "results")
    results = normalise(results)
    reference = options.reference
    check_reference(results, reference)
    check_reference_restorer(results, options.reference_restorer)
    lb = leaderboard(results, options.confidence, options.test, reference)
    cases = first_seen(results["case"])
    metrics = headline(lb, cases, reference)
    ov = overview.overview(
        results, reference, options.reference_restorer, options.confidence, options.test
    )
    rk = overview.ranking(ov, options.confidence)
    sentences = overview.headline(ov)
    weighted = lb["weighting"] != NO_WEIGHTING
    restorers = first_seen(lb.loc[weighted, "restorer"])
    plain = first_seen(lb.loc[~weighted, "restorer"])

    store = ImageStore()
    chart_keys = {
        "heatmap": store.add(charts.transfer_heatmap(lb, cases, restorers, reference)),
        "bars": store.add(charts.mpsnr_bars(lb, cases, restorers, plain)),
    }
    keys = ["case", "image_id", "restorer", "weighting"]
    mpsnr = {
        tuple(k): float(v) for k, v in results.groupby(keys, sort=True)["mpsnr"].mean().items()
    }
    noisy = {
        tuple(k): float(v)
        for k, v in results.groupby(["case", "image_id"], sort=True)["noisy_mpsnr"].mean().items()
    }
    tasks = P.task_of(lb)
    strips, links = gallery_view(gallery, mpsnr, noisy, cases, tasks, store, options.gallery_max_px)
    sections = []
    for s in method_sections(results, lb, options):
        view = (
            frame_table(s.table, s.columns, s.digits, f"{s.name}-table")
            if (s.table is not None)
            else None
        )
        sections.append(
            {
                "name": s.name,
                "title": s.title,
                "text": s.text,
                "view": view,
                "figure_key": store.add(s.figure),
                "caption": s.caption,
                "template": s.template,
                "section": s,
            }
        )
    inline = store.inline(options.inline_images_max_mb)
    headline_frame = P.headline_frame(metrics, lb, reference)
    conv = P.convergence(lb)
    exports = [
        Export("overview", "Overview: mean paired MPSNR gain over the reference", ov),
        Export("overview-matrix", "Overview matrix (gain, dB)", overview.overview_matrix(ov)),
        Export("ranking", f"Ranking ({overview.RANK_AGGREGATION})", rk),
        Export("headline", "Per case: best weighting of each method", headline_frame),
        Export("details", "Leaderboard per task, case, restorer and weighting", lb),
    ]
    exports += [
        Export(s["name"], s["title"], s["section"].table)
        for s in sections
        if s["section"].table is not None
    ]
    scale = overview.colour_scale(ov)
    synthetic = bool(results["synthetic"].astype(bool).any())
    context = {
        "title": P.TITLE,
        "synthetic": synthetic,
        "n_synthetic": int(results["synthetic"].astype(bool).sum()),
        "n_rows": len(results),
        "filters": P.filter_options(lb),
        "headline": sentences,
        "overview": P.overview_table(ov, lb),
        "scale": f"{scale if scale == scale else 0.0:.2f}",  # NaN: no gain to colour
        "n_images": ", ".join(str(n) for n in sorted({int(n) for n in ov["n"] if n == n})),
        "confidence_pct": f"{100 * options.confidence:g}",
        "reference": reference,
        "reference_restorer": options.reference_restorer,
        "test": options.test,
        "rank_aggregation": overview.RANK_AGGREGATION,
        "rank_weightings": P.ranking_table(rk, "weighting", "rank-weightings"),
        "rank_restorers": P.ranking_table(rk, "restorer", "rank-restorers"),
        "headline_table": P.headline_table(metrics, lb, reference),
        "details": P.detail_sections(lb, links),
        "charts": chart_keys,
        "sections": sections,
        "gallery": strips,
        "conv": conv,
        "exports": [{"name": e.name, "title": e.title} for e in exports],
        "prov": P.provenance(results, lb, meta, options.to_dict(), synthetic),
        "src": store.sources(inline),
        "metrics_json": script_json(metrics),
    }
    html = render(context, templates)
    lb_meta = {
        "stage": "report",
        "options": options.to_dict(),
        "better": BETTER,
        "unit": "image (seeds averaged per image first)",
        "results_meta": meta,
    }
    return Report(
        lb,
        lb_meta,
        metrics,
        html,
        exports=exports,
        images={} if inline else dict(store.images),
        overview=ov,
        ranking=rk,
        sentences=sentences,
    )


def write_report(report: Report, out_dir: str | os.PathLike = "reports") -> list[Path]:
    """``leaderboard.parquet``, ``metrics.json``, ``index.html``, ``leaderboard.csv``, the folder
    ``tables/`` (every table as CSV and LaTeX) and ``figures/page/`` (the page's images when it
    does not embed them) in ``out_dir``; each file is written to a temporary file and renamed,
    each folder built beside and swapped in, so a failure never leaves a half-written out."""
    out = Path(out_dir)
    paths = [out / name for name in OUTS]
    write_parquet(paths[0], report.leaderboard, report.leaderboard_meta)
    write_json(paths[1], report.metrics)
    write_csv(paths[3], report.leaderboard)
    paths.append(write_tables(report.exports, out / TABLES_DIR))
    paths.append(write_images(report.images, out / FIGURES_DIR))
    # The page last: it links the files above.
    write_bytes(paths[2], report.html.encode("utf-8"))
    return paths
