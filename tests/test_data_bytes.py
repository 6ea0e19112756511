"""Same params, same bytes: ``prepare`` and ``degrade`` outs do not depend on threads or CPU.

The stages run as subprocesses in two temporary copies of the project: one with one thread,
the other with two threads and, where NumPy can (x86), its AVX2/AVX-512 code paths switched off
(``NPY_DISABLE_CPU_FEATURES``), a generic OpenBLAS kernel and Arrow's SIMD off. That second run
computes like an older CPU would; every file of ``data/clean``, ``data/degraded`` and the
figure must come out byte for byte the same. Before the stored floats were computed without
``np.log10`` (see ``pipeline.degrade.suite.portable_mpsnr``), the degraded manifest differed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "seed": 3,
    "prepare": {
        "images": ["astronaut", "coffee", "rocket", "chelsea"],
        "scale": 0.125,
        "tile_size": 16,
        "split": {"train": 1, "val": 1, "test": 2},
    },
    "degrade": {
        "cases": [
            "noniid",
            "spatial",
            "stripe",
            "deadline",
            "impulse",
            "mixture",
            # tasks with an operator: blur (Gaussian and a random motion kernel, drawn through
            # exp/sin), ×2 down-sampling and inpainting
            {"name": "noniid", "operator": {"name": "blur", "sigma": 1.6}},
            {"name": "iid", "sigma_255": 10, "operator": {"name": "blur", "kernel": "motion"}},
            {"name": "iid", "sigma_255": 10, "operator": {"name": "downsample", "factor": 2}},
            {"name": "stripe", "operator": {"name": "inpaint", "missing": 0.5, "spectra": True}},
        ]
    },
}
DENOISING = ("noniid", "spatial", "stripe", "deadline", "impulse", "mixture")
OUTS = ("data/clean", "data/degraded", "reports/figures/degradations.png")

# Content of SMALL's outs (see `content_digest`), exact by construction: quantised tiles,
# float32 noisy arrays from float64 arithmetic, and manifest floats from exactly rounded sums
# and decimal logarithms.
PINNED_CONTENT = "5c40deea139a101aab840d6075d9a8463134827255218129994cc5f241a623d7"
# The array files of the denoising cases alone (see `array_digest`), as they were before cases
# could carry an operator: adding tasks changed none of their bytes.
PINNED_DENOISING_ARRAYS = "40e46b9abe77a8ee5f0a3cbc2db00b5745e4b5a522d3df6967d275d7e59c36c0"


def _simd_off_env() -> dict[str, str]:
    """Environment that makes this machine compute like one without AVX2/AVX-512."""
    from numpy._core import _multiarray_umath as umath

    have = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    env = {"OPENBLAS_CORETYPE": "Nehalem", "ARROW_USER_SIMD_LEVEL": "none"}
    if have:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(have)
    return env


def _threads(n: int) -> dict[str, str]:
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
    return dict.fromkeys(keys, str(n))


def run_stages(folder: Path, extra_env: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "params.yaml").write_text(yaml.safe_dump(SMALL, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(folder), **extra_env}
    for stage in ("prepare", "degrade"):
        done = subprocess.run(
            [sys.executable, "-m", f"stages.{stage}"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{stage} failed:\n{done.stdout}\n{done.stderr}"
    return folder


def out_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for out in OUTS:
        path = folder / out
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                files[f.relative_to(folder).as_posix()] = f.read_bytes()
    return files


def content_digest(folder: Path) -> str:
    """SHA-256 of the array files' bytes and of the manifests' values (not their Parquet
    bytes, which name the pyarrow version, nor the PNG, whose bytes depend on zlib)."""
    import pandas as pd

    h = hashlib.sha256()
    for rel, data in out_files(folder).items():
        if rel.endswith((".npy", ".npz")):
            h.update(rel.encode() + hashlib.sha256(data).digest())
    for manifest in ("data/clean/manifest.parquet", "data/degraded/manifest.parquet"):
        records = pd.read_parquet(folder / manifest).to_dict("records")
        rows = [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
            for r in records
        ]
        # repr of a float is its shortest exact decimal: any change of a bit changes the text
        h.update(json.dumps(rows, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def array_digest(folder: Path, cases: tuple[str, ...] | None = None) -> str:
    """SHA-256 over the paths and bytes of the ``.npy``/``.npz`` files under ``data/`` (only
    those of ``cases`` under ``data/degraded`` when given)."""
    h = hashlib.sha256()
    for f in sorted((folder / "data").rglob("*.np[yz]")):
        rel = f.relative_to(folder).as_posix()
        parts = rel.split("/")
        if cases is not None and parts[1] == "degraded" and parts[3] not in cases:
            continue
        if cases is not None and parts[1] == "degraded" and len(parts) != 5:
            continue  # a task's nested folder (operator/noise)
        h.update(rel.encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("bytes")
    a = run_stages(base / "one-thread", _threads(1))
    b = run_stages(base / "two-threads-no-simd", {**_threads(2), **_simd_off_env()})
    return a, b


def test_outs_are_byte_identical_across_threads_and_simd_paths(two_runs):
    a, b = two_runs
    fa, fb = out_files(a), out_files(b)
    assert set(fa) == set(fb)
    # every out is there: 4 tiles, 3 (val + test) × 6 cases noisy files, manifests, figure
    assert sum(k.startswith("data/clean/") and k.endswith(".npy") for k in fa) == 4
    assert sum(k.endswith(".npz") for k in fa) == 3 * 10  # 1 val + 2 test images × 10 cases
    assert {"data/clean/manifest.parquet", "data/degraded/manifest.parquet", OUTS[2]} <= set(fa)
    differ = sorted(k for k in fa if fa[k] != fb[k])
    assert differ == [], f"files differ between the two runs: {differ}"


def test_stored_mpsnr_is_exact_and_close_to_numpy(two_runs):
    """The manifest's noisy MPSNR is the decimal/fsum value, within 1e-12 dB of np.log10's."""
    import pandas as pd

    from pipeline.degrade.suite import on_clean_grid
    from pipeline.evaluate.metrics import mpsnr
    from pipeline.io import load_npy, load_npz

    a, _ = two_runs
    df = pd.read_parquet(a / "data/degraded/manifest.parquet")
    for row in df.itertuples():
        x = load_npy(a / row.clean_path)
        y = on_clean_grid(load_npz(a / row.path, ("noisy",))["noisy"], x.shape)
        assert abs(row.noisy_mpsnr - mpsnr(x, y)) < 1e-12
        # an independent transcription: exact per-band MSE as Fractions, log10 in float
        from fractions import Fraction

        d = x.astype(np.float64) - y.astype(np.float64)
        psnr = [
            10 * math.log10(1 / float(sum(map(Fraction, (b * b).ravel().tolist())) / b.size))
            for b in d
        ]
        assert abs(row.noisy_mpsnr - sum(psnr) / len(psnr)) < 1e-11


def test_content_is_pinned(two_runs):
    """The content of a small run is the same on every machine (with the locked libraries).

    Safe to pin because each stored value is exact by construction: cubes quantised to 16 bits
    after float64 arithmetic without transcendental NumPy functions (the Gaussian's weights come
    from ``decimal``), noisy arrays rounded to float32 from exactly rounded float64 operations,
    draws from PCG64 through exact arithmetic, and manifest floats from ``math.fsum`` and
    ``decimal`` logarithms. What is left to chance is a tile's effective rank landing within
    ~1e-13 of the 99.9 % threshold (LAPACK), far below anything a test could meet.
    """
    a, b = two_runs
    assert content_digest(a) == content_digest(b) == PINNED_CONTENT


def test_denoising_files_are_unchanged_by_tasks(two_runs):
    """The denoising cases' files are byte for byte those made before cases could carry an
    operator (their noise is drawn from the same stream; an operator draws from its own)."""
    a, _ = two_runs
    assert array_digest(a, DENOISING) == PINNED_DENOISING_ARRAYS


def test_task_files_rebuild_their_operator(two_runs):
    """Each task file stores what rebuilds A, and y is A x + noise on y's grid."""
    import torch

    from pipeline.degrade.tasks import apply_operator, load_degraded

    a, _ = two_runs
    files = sorted((a / "data" / "degraded" / "test").glob("*/*/*.npz"))
    tasks = {f.parent.parent.name for f in files}
    assert tasks == {"blur-g1.6", "blur-m9", "sr-x2", "inpaint-50-spectra"}
    for f in files:
        arrays, A = load_degraded(f)
        clean = np.load(next((a / "data" / "clean" / "test").glob(f"{f.stem}.npy")))
        ax = apply_operator(arrays, clean)
        assert arrays["noisy"].shape == ax.shape
        with torch.no_grad():
            torch_ax = A.A(torch.from_numpy(clean.astype(np.float64))[None])[0].numpy()
        assert np.abs(torch_ax - ax).max() < 1e-12
