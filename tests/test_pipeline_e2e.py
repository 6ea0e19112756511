"""The real `dvc repro` of prepare and degrade, in a temporary git repository, on tiny params."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "pipeline",
    "stages",
    "dvc.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
]

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
}

pytestmark = pytest.mark.e2e


def sh(args, cwd, env):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{args} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("e2e") / "project"
    repo.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)  # the copy's code, not the installed checkout's
    env["DVC_NO_ANALYTICS"] = "1"
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"] = "dlw-bench tests"
        env[f"GIT_{who}_EMAIL"] = "tests@localhost"
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "tiny project"], repo, env)
    return repo, env


def dvc_repro(repo, env):
    return sh([str(Path(sys.executable).parent / "dvc"), "repro"], repo, env)


def test_repro_writes_every_out_and_reruns_only_what_changed(repo):
    repo, env = repo
    first = dvc_repro(repo, env)
    for stage in ("prepare", "degrade", "train"):
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
    assert "Running stage" not in second

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["degrade"]["cases"][1]["density"] = [0.2]
    params["degrade"]["cases"][1]["label"] = "impulse"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc_repro(repo, env)
    assert "Running stage 'degrade'" in third
    assert "Running stage 'prepare'" not in third and "Running stage 'train'" not in third
    after = pd.read_parquet(repo / "data/degraded/manifest.parquet")
    key = ["split", "case", "image_id"]
    merged = degraded.merge(after, on=key, suffixes=("_before", "_after"))
    changed = merged[merged.sha256_before != merged.sha256_after]
    assert set(changed.case) == {"impulse"}  # only the edited case's files changed
