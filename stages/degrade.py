"""DVC stage ``degrade``: fixed, seeded noisy evaluation sets for the val and test splits.

Reads params ``seed`` and ``degrade`` and the outs of ``prepare``; writes ``data/degraded/``,
``reports/figures/degradations.png`` and ``reports/degrade.json``.
"""

from __future__ import annotations

import logging

from pipeline.data.dataset import read_manifest
from pipeline.degrade.figure import degradation_figure
from pipeline.degrade.suite import clean_metadata, degrade, summarize
from pipeline.io import write_json
from stages._common import run, start

log = logging.getLogger("degrade")


def main() -> None:
    params = start("degrade")
    p = params.degrade
    manifest = read_manifest("data/clean/manifest.parquet")
    meta = clean_metadata("data/clean/manifest.parquet")
    log.info("cases %s on splits %s", [c.label for c in p.cases], p.splits)
    df, examples, figure_id = degrade(p, params.seed, manifest, meta, "data/degraded")
    summary = summarize(df)
    summary["dataset_hash"] = meta.get("dataset_hash")
    summary["synthetic"] = bool(meta.get("synthetic", False))
    write_json("reports/degrade.json", summary)
    degradation_figure(
        examples, figure_id, summary["synthetic"], "reports/figures/degradations.png"
    )
    for case, s in summary.get("test", {}).items():
        log.info(
            "test %-12s noisy MPSNR %6.2f dB, corrupted %5.1f %%",
            case,
            s["noisy_mpsnr"],
            100 * s["corrupted_fraction"],
        )


if __name__ == "__main__":
    run("degrade", main)
