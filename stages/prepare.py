"""DVC stage ``prepare``: clean images → data/clean/{train,val,test}/ + manifest.parquet.

Reads params ``seed`` and ``prepare``; writes ``data/clean/`` and ``reports/data.json``.
"""

from __future__ import annotations

import dataclasses
import logging

from pipeline.data.dataset import prepare
from pipeline.io import write_json
from stages._common import run, start

log = logging.getLogger("prepare")


def main() -> None:
    params = start("prepare")
    p = params.prepare
    log.info(
        "source %s, %s bands, tiles of %s px at scale %s, splits %s",
        p.source,
        p.bands,
        p.tile_size or "whole-image",
        p.scale,
        dataclasses.asdict(p.split),
    )
    df, summary = prepare(p, params.seed, "data/clean")
    write_json("reports/data.json", dataclasses.asdict(summary))
    label = "SYNTHETIC cubes synthesised from RGB photographs" if summary.synthetic else "images"
    log.info(
        "wrote %d %s (%s); dataset hash %s",
        len(df),
        label,
        summary.images,
        summary.dataset_hash[:12],
    )
    if summary.effective_rank:
        log.info("effective rank (99.9 %% energy): %s", summary.effective_rank)


if __name__ == "__main__":
    run("prepare", main)
