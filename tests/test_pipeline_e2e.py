"""The real `dvc repro` of the whole pipeline (prepare, degrade, train, evaluate, report) in a
temporary git repository, on tiny params."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from dvc_project import dvc, make_project, sh

TINY = {
    "seed": 7,
    "device": "cpu",
    "tracking": {"uri": None, "experiment": "e2e"},
    "ray": {"address": None, "num_cpus": 2},
    "prepare": {
        "images": ["astronaut", "coffee", "rocket", "chelsea"],
        "scale": 0.125,
        "tile_size": 16,
        "split": {"train": 1, "val": 1, "test": 2},
    },
    "train": {
        "source_sets": [["tv"]],
        "width": 4,
        "depth": 1,
        "patch_size": 16,
        "batch_size": 2,
        "epochs": 1,
        "steps_per_epoch": 2,
        "val_patches": 1,
    },
    "degrade": {
        "cases": [{"name": "noniid"}, {"name": "impulse"}, {"name": "iid", "sigma_255": 30}]
    },
    "evaluate": {
        "targets": {"tv": {"boundary": "neumann", "tol": 0.01}, "nn": {"tol": 0.01}},
        "grid": [0.5, 2.0],
        "baselines": ["bm4d", "tv_l1"],
        "tv_l1": {"tol": 0.01},
        "gallery_images": 1,
    },
    "report": {"confidence": 0.9},
}
WEIGHTINGS = {"unweighted", "oracle", "handcrafted", "dlw:tv"}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("e2e") / "project"
    return repo, make_project(repo, TINY)


def dvc_repro(repo, env):
    return sh(dvc("repro"), repo, env)


def test_repro_writes_every_out_and_reruns_only_what_changed(repo):
    repo, env = repo
    first = dvc_repro(repo, env)
    for stage in ("prepare", "degrade", "train", "evaluate", "report"):
        assert f"Running stage '{stage}'" in first
    clean = pd.read_parquet(repo / "data/clean/manifest.parquet")
    assert {
        "image_id",
        "split",
        "source",
        "path",
        "channels",
        "height",
        "width",
        "sha256",
        "synthetic",
    } <= set(clean.columns)
    assert len(clean) == 4 and clean.synthetic.all() and (clean.channels == 31).all()
    assert (repo / "reports/data.json").is_file()
    degraded = pd.read_parquet(repo / "data/degraded/manifest.parquet")
    assert {
        "split",
        "case",
        "case_params",
        "image_id",
        "path",
        "seed",
        "sha256",
        "noisy_mpsnr",
    } <= set(degraded.columns)
    assert set(degraded.case) == {"noniid", "impulse", "iid-30"}
    assert set(degraded.split) == {"val", "test"} and len(degraded) == 3 * 3
    assert all((repo / p).is_file() for p in degraded.path)
    assert (repo / "reports/figures/degradations.png").stat().st_size > 10_000
    assert (repo / "dvc.lock").is_file()
    assert (repo / "models/dlw/tv/seed-0.pt").is_file() and (
        repo / "models/dlw/tv/best.pt"
    ).is_file()
    assert (repo / "reports/train_metrics.json").is_file()

    second = dvc_repro(repo, env)
    # Only ``sources`` (always run: it fingerprints the images) runs; nothing else changed.
    for stage in ("prepare", "degrade", "train", "evaluate", "report"):
        assert f"Running stage '{stage}'" not in second
    assert (repo / "data/sources.json").is_file()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["degrade"]["cases"][1]["density"] = [0.2]
    params["degrade"]["cases"][1]["label"] = "impulse"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc_repro(repo, env)
    assert "Running stage 'degrade'" in third and "Running stage 'evaluate'" in third
    assert "Running stage 'prepare'" not in third and "Running stage 'train'" not in third
    after = pd.read_parquet(repo / "data/degraded/manifest.parquet")
    key = ["split", "case", "image_id"]
    merged = degraded.merge(after, on=key, suffixes=("_before", "_after"))
    changed = merged[merged.sha256_before != merged.sha256_after]
    assert set(changed.case) == {"impulse"}  # only the edited case's files changed


def test_evaluate_and_report_outs(repo):
    """Run after the repro test (module order): every out of evaluate and report is there."""
    repo, env = repo
    results = pd.read_parquet(repo / "reports/results.parquet")
    test = pd.read_parquet(repo / "data/degraded/manifest.parquet").query("split == 'test'")
    weighted = results[results.method == "dlw"]
    assert set(weighted.weighting) == WEIGHTINGS and set(weighted.target) == {"tv", "nn"}
    # one row per weighting × target × case × test image, and the two baselines' rows
    assert len(weighted) == len(WEIGHTINGS) * 2 * len(test)
    assert len(results[results.method == "bm4d"]) == len(test)
    assert len(results[results.method == "tv_l1"]) == len(test)
    assert results.mpsnr.notna().all() and set(results.split) == {"test"}
    assert set(results.strength.dropna()) <= {0.5, 2.0}
    assert (results.mlflow_run_id != "").all() and results.synthetic.all()
    for name in ("tuning", "gallery", "leaderboard"):
        assert (repo / f"reports/{name}.parquet").stat().st_size > 1000
    tuning = pd.read_parquet(repo / "reports/tuning.parquet")
    assert set(tuning.split) == {"val"} and tuning.chosen.any()
    html = (repo / "reports/index.html").read_text(encoding="utf-8")
    assert "SYNTHETIC" in html.upper() and "<html" in html
    assert "http://" not in html and "https://" not in html.replace("https://www.w3.org", "")
    for weighting in WEIGHTINGS:
        assert weighting in html
    assert (repo / "reports/metrics.json").is_file() and (repo / "reports/evaluate.json").is_file()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["grid"] = [1.0]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc_repro(repo, env)
    assert "Running stage 'evaluate'" in out and "Running stage 'report'" in out
    for stage in ("prepare", "degrade", "train"):
        assert f"Running stage '{stage}'" not in out
    assert set(pd.read_parquet(repo / "reports/results.parquet").strength.dropna()) == {1.0}
