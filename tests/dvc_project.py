"""A copy of the project in a temporary git repository, for tests that run the real DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = (
    "pipeline",
    "stages",
    "dvc.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
)


def sh(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    """Run ``args``; its stdout and stderr, or an AssertionError quoting them."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{args} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def dvc(*args: str) -> list[str]:
    return [str(BIN / "dvc"), *args]


def make_project(repo: Path, params: dict[str, Any], setup=None) -> dict[str, str]:
    """Copy the project's code and DVC files into ``repo``, write ``params`` as its params.yaml,
    call ``setup(repo)`` (extra files), commit it all; returns the environment to run DVC in."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if setup is not None:
        setup(repo)
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)  # the copy's code, not the installed checkout's
    env["DVC_NO_ANALYTICS"] = "1"
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"] = "dlw-bench tests"
        env[f"GIT_{who}_EMAIL"] = "tests@localhost"
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "test project"], repo, env)
    return env
