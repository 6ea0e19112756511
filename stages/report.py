"""DVC stage ``report``: the leaderboard, headline metrics and HTML page from the evaluate outs.

Reads ``reports/results.parquet``, ``reports/gallery.parquet`` and the ``report`` params section
(``confidence``, ``test``, ``reference``, ``gallery_max_px``; defaults in
:class:`pipeline.report.build.ReportOptions`). Writes ``reports/leaderboard.parquet``,
``reports/metrics.json`` and ``reports/index.html``, each atomically. A pure function of its
inputs: no clock, no randomness, no network.
"""

from __future__ import annotations

import logging

from stages._common import run, start

log = logging.getLogger("report")

RESULTS = "reports/results.parquet"
GALLERY = "reports/gallery.parquet"
OUT_DIR = "reports"


def main() -> None:
    params = start("report")
    from pipeline.report.build import (
        ReportOptions,
        build_report,
        read_gallery,
        read_results,
        write_report,
    )
    from pipeline.report.leaderboard import weighting_methods

    options = ReportOptions.from_section(params.report)
    results, meta = read_results(RESULTS)
    gallery = read_gallery(GALLERY)
    log.info("%d result rows, %d gallery rows; options %s", len(results), len(gallery), options)
    report = build_report(results, gallery, meta, options)
    for path in write_report(report, OUT_DIR):
        log.info("wrote %s", path)
    lb = report.leaderboard
    log.info("%d leaderboard cells; synthetic data: %s", len(lb), report.metrics["synthetic"])
    methods = weighting_methods(lb)
    for case, e in report.metrics["cases"].items():
        # One "best variant (gain)" per method that provides weightings, named from the data.
        best = ", ".join(
            f"{m} {e.get(f'best_{m}')} ({e.get(f'best_{m}_gain_db')} dB)" for m in methods
        )
        log.info(
            "%-12s best weighting %s (%s dB over %s); best per method: %s",
            case,
            e["best_weighting"],
            e["best_weighting_gain_db"],
            options.reference,
            best or "none",
        )


if __name__ == "__main__":
    run("report", main)
