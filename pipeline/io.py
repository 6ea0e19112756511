"""Atomic writes, canonical array hashes and the on-disk array formats.

Hashes are taken over canonical array bytes (dtype, shape, little-endian C-order data), never
over files, whose bytes depend on compression libraries. Every writer goes through a temporary
file in the destination folder and ``os.replace``, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# A fixed timestamp keeps .npz bytes identical across runs, so DVC sees unchanged outs.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def array_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 over dtype, shape and little-endian C-order bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(le.dtype.str.encode())
        h.update(repr(tuple(a.shape)).encode())
        h.update(np.ascontiguousarray(le).tobytes())
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a published file gets the usual mode for the user's umask.
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Uncompressed .npz with fixed member timestamps: byte-identical for identical arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            arr = np.ascontiguousarray(arrays[name])
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    write_bytes(path, buf.getvalue())


def load_npz(
    path: str | os.PathLike, keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all required) and those of ``optional`` the file has."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing} (has {sorted(z.files)})")
            return {k: z[k] for k in (*keys, *(k for k in optional if k in z.files))}
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what a killed :func:`atomic_dir` of ``path`` left beside it; returns the paths.

    A SIGKILL (or power loss) between building the temporary folder and the swap leaves
    ``.<name>.<pid>.<random>.tmp`` (and, mid-swap, ``.<name>.old-<pid>``) behind, where no
    ``finally`` clause can remove it. Such a folder is stale when its process is gone; one
    without a process id (an older naming) is always stale. Live processes' folders are kept.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.(?:(?P<pid>\d+)\.[^/]*\.tmp|[^/.]+\.tmp|old-(?P<old>\d+))$"
    )
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None:
            continue
        pid = m["pid"] or m["old"]
        if pid is not None and (int(pid) == os.getpid() or _pid_alive(int(pid))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it into place only on success.

    Temporaries of earlier runs that were killed before they could clean up are removed first
    (:func:`remove_stale_temporaries`), so an interrupted stage leaves nothing behind for good.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    )
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def safe_name(name: str, what: str = "name") -> str:
    """Reject names that could escape their folder or are awkward as file names."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} is not a safe file name: use letters, digits, '.', '_', '+', '-' "
            "(no path separators, no '..', at most 128 characters)"
        )
    return name


SCHEMA_VERSION = 1
PARQUET_META_KEY = b"dlw_bench"


def write_parquet(
    path: str | os.PathLike, df, metadata: Mapping[str, Any], compression: str = "snappy"
) -> None:
    """A DataFrame as Parquet, with ``metadata`` (schema version, run configuration) as JSON
    under the ``dlw_bench`` key of the file's key-value metadata.

    Every writer setting is fixed here rather than left to the library's defaults, so the
    bytes are a function of the table and the pinned pyarrow version (whose name the format
    records in its footer) only, on every machine and with any number of threads.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PARQUET_META_KEY] = canonical_json({"schema_version": SCHEMA_VERSION, **metadata}).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            version="2.6",
            compression=compression,
            use_dictionary=True,
            write_statistics=True,
            data_page_version="1.0",
            store_schema=True,
            write_page_index=False,
            write_page_checksum=False,
        )


def read_parquet_meta(path: str | os.PathLike) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(PARQUET_META_KEY, b"{}"))


def png_bytes(rgb: np.ndarray, dpi: float | None = None) -> bytes:
    """An 8-bit RGB or RGBA PNG (ISO/IEC 15948) from an (H, W, 3 or 4) uint8 array.

    Written here rather than by Pillow because Pillow's bundled zlib-ng chooses its match
    finder by CPU and may compress the same pixels to different bytes on different machines;
    the standard library's zlib (the reference implementation) at a fixed level does not.
    Every row uses the "Sub" filter (byte minus the byte one pixel to the left, mod 256); no
    text or time chunks, so identical pixels give identical files.
    """
    import zlib

    a = np.ascontiguousarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"png_bytes needs an (H, W, 3|4) uint8 array, got {a.dtype} {a.shape}")
    h, w, c = a.shape
    sub = a.copy()
    sub[:, 1:] = a[:, 1:] - a[:, :-1]  # uint8 arithmetic wraps mod 256, as the filter wants
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub.reshape(h, w * c)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    colour_type = 2 if c == 3 else 6
    out = [
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)),
    ]
    if dpi is not None:
        ppm = round(dpi / 0.0254)  # pixels per metre
        out.append(chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)))
    out.append(chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)))
    out.append(chunk(b"IEND", b""))
    return b"".join(out)
