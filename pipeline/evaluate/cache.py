"""The per-cell cache of the evaluate stage: a solved cell is stored under a key made of
everything its numbers depend on, and read back instead of solved again.

**Key** (:func:`cell_key`): the restorer's identity — its label, its complete parameters at the
cell's strength (every field, defaults included), the hash of the code that solves it (the model
package, or a learned method's package plus its checkpoint's bytes, or the peer baseline's module
and package version) —, the weight map's content hash (``none`` without one), the degraded and
clean files' content hashes, the strength multiplier, the precision, the phase (val cells keep
only MPSNR), the gallery band, the metrics code and the torch/numpy versions. A change of any of
these is a different key: adding a weighting solves only its cells, changing one restorer's
parameter only that restorer's.

**Entries** are JSON files ``<folder>/<key[:2]>/<key>.json`` holding the record and the SHA-256
of its canonical form. An entry that does not parse or whose hash does not match (a truncated
write, a disk error, an edit) is reported, deleted and solved again — never used. Writes are
atomic (temporary file, then rename), so concurrent writers of one key leave one whole entry.
Records store floats as JSON numbers, which round-trip float64 exactly, and the gallery band as
float32 values, so a cell read back is bit-identical to the cell solved.

The cache lives in ``runs/cache/cells`` (engine state like Ray's folder: not in git, not a DVC
out) and is safe to delete at any time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import array_sha256, canonical_json, json_sha256, write_bytes

__all__ = ["CellCache", "cell_key", "map_identity", "map_key", "method_hash", "source_hash"]

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parents[1]
FORMAT = 1  # bump when the record layout changes


def source_hash(*entries: str | os.PathLike) -> str:
    """SHA-256 of the Python files under ``entries`` (paths relative to ``pipeline/``, or
    absolute), names and bytes, in sorted order."""
    h = hashlib.sha256()
    for entry in entries:
        root = Path(entry) if Path(entry).is_absolute() else PACKAGE / entry
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def method_hash(method_cls: type) -> str:
    """:func:`source_hash` of a learned method's code: its package folder (or its one file) and
    the other code it declares (``Method.code``, e.g. the start points of
    ``evaluate/operator_baselines.py``), so an edit there solves its cells again."""
    import inspect

    own = Path(inspect.getfile(method_cls)).resolve()
    extra = tuple(getattr(method_cls, "code", ()))
    return source_hash(own.parent if own.name == "__init__.py" else own, *extra)


@functools.cache
def _version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _metrics_hash() -> str:
    # Read once per process: a key is computed for every cell.
    return source_hash("evaluate/metrics.py")


def cell_key(
    *,
    restorer: dict[str, Any],
    weight_hash: str,
    item_hash: str,
    multiplier: float,
    precision: str,
    phase: str,
    band: int,
) -> str:
    """The content key of one cell (module docstring); ``restorer`` is the identity built by
    :meth:`pipeline.evaluate.restorers.Restorer.identity`."""
    return json_sha256(
        {
            "format": FORMAT,
            "restorer": restorer,
            "weights": weight_hash,
            "item": item_hash,
            "multiplier": None if multiplier != multiplier else float(multiplier),
            "precision": precision,
            "phase": phase,
            "band": int(band),
            "metrics": _metrics_hash(),
            "versions": {n: _version(n) for n in ("torch", "numpy", "scipy")},
        }
    )


def map_identity(weighting, root: Path, device: str) -> dict[str, Any]:
    """What a learned weighting's maps depend on besides the image: the method's code, the
    checkpoint's bytes, the device and the package versions (computed once per weighting)."""
    return {
        "format": FORMAT,
        "map": weighting.label,
        "code": method_hash(weighting.method_cls),
        "checkpoint": hashlib.sha256((Path(root) / weighting.path).read_bytes()).hexdigest(),
        "device": device,
        "net_precision": weighting.net_precision,  # resolved by plan_weightings
        "versions": {n: _version(n) for n in ("torch", "numpy")},
    }


def map_key(identity: dict[str, Any], item_hash: str) -> str:
    """The content key of one image's map (:func:`map_identity` and the image's hash)."""
    return json_sha256({**identity, "item": item_hash})


def _encode(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    if "x_band" in out:
        band = np.asarray(out["x_band"], dtype=np.float32)
        out["x_band"] = {"shape": list(band.shape), "values": band.ravel().tolist()}
    return out


def _decode(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    if "x_band" in out:
        band = out["x_band"]
        values = np.asarray(band["values"], dtype=np.float32)
        out["x_band"] = values.reshape(band["shape"])
    return out


@dataclass
class CellCache:
    """A folder of cell records (``None``: no cache, every cell is solved)."""

    folder: Path | None
    hits: int = 0
    misses: int = 0
    corrupt: list[str] = field(default_factory=list)

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``, or None (absent, or corrupt: then deleted and reported)."""
        if self.folder is None:
            self.misses += 1
            return None
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            entry = json.loads(raw)
            record = entry["record"]
            ok = entry["sha256"] == json_sha256(record) and entry["key"] == key
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            log.warning("cell cache: %s is corrupt (hash mismatch); solving it again", path)
            self.corrupt.append(str(path))
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return _decode(record)

    def put(self, key: str, record: dict[str, Any]) -> None:
        if self.folder is None:
            return
        plain = json.loads(canonical_json(_encode(record)))
        entry = {"key": key, "sha256": json_sha256(plain), "record": plain}
        write_bytes(self._path(key), canonical_json(entry).encode("utf-8"))

    # Learned weight maps (a network's forward pass per image): ``maps/<key>.npz`` holding the
    # array and its content hash, checked on reading like the cells.

    def _array_path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder.parent / "maps" / key[:2] / f"{key}.npz"

    def get_array(self, key: str) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self._array_path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                a, stored = z["a"], bytes(z["sha256"]).decode()
            ok = stored == array_sha256(a)
        except Exception:  # a damaged archive: BadZipFile, EOFError, ValueError, OSError, …
            ok = False
        if not ok:
            log.warning("map cache: %s is corrupt (hash mismatch); computing it again", path)
            self.corrupt.append(str(path))
            path.unlink(missing_ok=True)
            return None
        return a

    def put_array(self, key: str, a: np.ndarray) -> None:
        if self.folder is None:
            return
        import io

        buf = io.BytesIO()
        digest = np.frombuffer(array_sha256(a).encode(), dtype=np.uint8)
        np.savez(buf, a=a, sha256=digest)
        write_bytes(self._array_path(key), buf.getvalue())
