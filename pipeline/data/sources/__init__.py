"""Clean-image sources. Each yields :class:`RawImage` objects; the registry is explicit."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pipeline.data.sources.base import RawImage
from pipeline.data.sources.cave import load_cave
from pipeline.data.sources.embedded import load_embedded
from pipeline.data.sources.folder import load_folder
from pipeline.data.sources.icvl import load_icvl

# name → loader(root, names, bands, layout) yielding RawImage in a deterministic order
# (layout: axis order of array files, used by the folder source)
SOURCES: dict[str, Callable[..., Iterator[RawImage]]] = {
    "embedded": load_embedded,
    "folder": load_folder,
    "cave": load_cave,
    "icvl": load_icvl,
}

__all__ = ["SOURCES", "RawImage"]
