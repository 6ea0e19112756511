"""DVC stage ``sources``: ``data/sources.json``, the content manifest of the clean images.

Runs on every ``dvc repro`` (``always_changed``): it hashes the files under ``prepare.path``
(or the embedded photographs' pixels), so that ``prepare``, which depends on the manifest,
reruns exactly when the images changed (:mod:`pipeline.data.fingerprint`).
"""

from __future__ import annotations

import logging

from pipeline.data.fingerprint import source_fingerprint
from pipeline.io import write_json
from stages._common import run, start

log = logging.getLogger("sources")


def main() -> None:
    params = start("sources")
    manifest = source_fingerprint(params.prepare)
    write_json("data/sources.json", manifest)
    log.info("%s source: %d files fingerprinted", manifest["source"], len(manifest["files"]))


if __name__ == "__main__":
    run("sources", main)
