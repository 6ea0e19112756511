"""Fixtures of the training tests: a tiny clean dataset on disk, tiny train params, and ONE
local Ray instance shared by the tests that need it (``ray.init`` takes 3–4 s).

Import the fixtures into a test module: ``from ray_fixtures import ray_local  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.io import json_sha256, save_npy, write_parquet
from pipeline.seeding import rng_for

# No telemetry, no auth for a local cluster, whichever way pytest was started.
for _key, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_key, _value)


def smooth_cube(bands: int, size: int, phase: float) -> np.ndarray:
    """A smooth synthetic cube in [0.2, 0.8]: every band a shifted product of sinusoids."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    b = np.linspace(0.0, 1.0, bands)[:, None, None]
    cube = 0.5 + 0.3 * np.sin(2 * np.pi * (xx + 0.5 * b + phase)) * np.cos(np.pi * (yy + phase))
    return cube.astype(np.float32)


def make_dataset(root: Path, bands: int = 8, size: int = 16) -> Path:
    """``root/data/clean`` as the prepare stage writes it: 2 train tiles, 1 val, 1 test, and a
    manifest whose metadata holds the dataset hash."""
    out = root / "data" / "clean"
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        image_id = f"img{i}"
        rng = rng_for(0, "tests", image_id)
        tile = smooth_cube(bands, size, float(rng.uniform(0, 1)))
        tile = (tile + 0.02 * rng.standard_normal(tile.shape)).astype(np.float32)
        save_npy(out / split / f"{image_id}.npy", tile)
        rows.append(
            {
                "image_id": image_id,
                "split": split,
                "path": f"data/clean/{split}/{image_id}.npy",
                "sha256": json_sha256(tile.tolist()),
            }
        )
    df = pd.DataFrame(rows).sort_values(["split", "image_id"]).reset_index(drop=True)
    meta = {"stage": "prepare", "dataset_hash": json_sha256(df.values.tolist())}
    write_parquet(out / "manifest.parquet", df, meta)
    return out


# A seconds-long DLW section: width 4, 16×16 patches, TV only.
TINY_DLW = {
    "source_models": ["tv"],
    "source_sets": [["tv"]],
    "width": 4,
    "depth": 1,
    "patch_size": 16,
    "batch_size": 2,
    "epochs": 2,
    "steps_per_epoch": 2,
    "val_patches": 1,
}


def tiny_params(root: Path, tracking_uri: str | None = None, **dlw):
    """Params of a seconds-long DLW experiment (``train.dlw``; ``dlw`` overrides): width 4,
    16×16×8 patches, TV only by default. Train it with ``run_training(tiny_method(params),
    params, root)``."""
    from pipeline.config import parse_params

    base = {**TINY_DLW, "max_failures": 0, **dlw}
    uri = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    return parse_params(
        {
            "train": {"methods": ["dlw"], "dlw": base},
            "tracking": {"uri": uri, "experiment": "tests"},
            "ray": {"num_cpus": 2},
        }
    )


def tiny_method(params):
    """The DLW method of ``params`` (its ``train.dlw`` section), checked as the stage does."""
    method = params.train.method("dlw")
    method.check("train.dlw")
    return method


def finish(result, params, root: Path) -> dict:
    """What the train stage does after the fit: write the outputs, log the pictures (returns
    the metrics written; checks that every trial with an MLflow run got its picture)."""
    from pipeline.train.outputs import log_figures, write_outputs

    context = {"seed": params.seed, "data_dir": str(root / "data" / "clean")}
    metrics = write_outputs(result, params, root, context)
    logged = log_figures(result, context)
    assert logged == sum(1 for o in result.outcomes if o.mlflow_run_id), logged
    return metrics


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for the whole session; a short temp dir (AF_UNIX paths ≤ 107 B)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store, made once: creating one runs MLflow's schema
    migrations (≈ 5 s), copying the file is instant."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def sqlite_store(template: Path, path: Path) -> str:
    """A fresh store at ``path`` (a copy of the template); returns its URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"
