"""A content manifest of the clean-image source, so DVC reruns ``prepare`` when the images change.

``prepare.path`` is a parameter, not a path DVC can track: it may be null (the embedded
photographs) and DVC cannot template a dependency from a null value. The ``sources`` stage
(``always_changed``, a second or so) therefore writes ``data/sources.json``: the source kind
and, per file under ``prepare.path``, its relative path, size and SHA-256 (for the embedded
source: each photograph's pixel hash). ``prepare`` depends on that file, so replacing, adding
or removing an image changes it and reruns ``prepare``; an unchanged folder leaves its bytes,
and so ``prepare``, alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.data.params import PrepareParams


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_fingerprint(p: PrepareParams) -> dict[str, Any]:
    """What the images of ``p`` are, as JSON-able data (sorted, no times)."""
    out: dict[str, Any] = {"source": p.source, "images": p.images}
    if p.source == "embedded":
        from pipeline.data.sources.embedded import load_embedded

        out["files"] = [
            {"name": raw.name, "pixels_sha256": raw.content_sha256}
            for raw in load_embedded(None, p.images, p.bands)
        ]
        return out
    root = Path(p.path or ".")
    if not root.is_dir():
        raise ValueError(f"prepare.path = {p.path!r}: not a folder")
    files = sorted(f for f in root.rglob("*") if f.is_file())
    out["files"] = [
        {
            "path": f.relative_to(root).as_posix(),
            "size": f.stat().st_size,
            "sha256": file_sha256(f),
        }
        for f in files
    ]
    return out
