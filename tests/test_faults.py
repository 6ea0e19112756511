"""Faults and bad input at the stage level: an unreachable MLflow costs the run ids, never the
results; a resource request no Ray node can meet is refused at once, naming the key and what
is offered; a typo in a top-level key stops every stage; any failure of a stage is one line and
a non-zero exit status (130 when interrupted)."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ray_fixtures import (
    free_port,
    make_dataset,
    mlflow_template,  # noqa: F401
    ray_local,  # noqa: F401
    sqlite_store,
    tiny_method,
    tiny_params,
)

from pipeline.compute import ResourceError, check_resources
from pipeline.schema import ConfigError
from stages._common import INTERRUPTED, run

ROOT = Path(__file__).resolve().parents[1]

# Three 16×16×8 cubes, one impulse case, one restorer and two weightings: evaluate in ~15 s.
TINY = {
    "seed": 3,
    "ray": {"num_cpus": 2},
    "prepare": {
        "images": ["astronaut", "coffee", "rocket"],
        "bands": 8,
        "scale": 0.125,
        "tile_size": 16,
        "split": {"train": 1, "val": 1, "test": 1},
    },
    "degrade": {"cases": [{"name": "impulse"}]},
    "evaluate": {
        "restorers": {"tv": {"boundary": "neumann", "tol": 0.01}},
        "weightings": ["unweighted", "oracle"],
        "grid": [1.0],
        "gallery_images": 1,
    },
}


def stage_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "DLW_DEBUG"):
        if key not in extra:
            env.pop(key, None)
    return env


def run_stage(name: str, cwd: Path, timeout: float = 300, **env: str):
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", f"stages.{name}"],
        cwd=cwd,
        env=stage_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - t0


@pytest.fixture(scope="module")
def degraded(tmp_path_factory) -> Path:
    """A project folder with ``data/clean`` and ``data/degraded`` from the real stages."""
    repo = tmp_path_factory.mktemp("faults")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    for name in ("prepare", "degrade"):
        done, _ = run_stage(name, repo)
        assert done.returncode == 0, done.stderr[-3000:]
    return repo


def project(degraded: Path, folder: Path, **evaluate) -> Path:
    """A project sharing ``degraded``'s data, with its own params and reports."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").symlink_to(degraded / "data")
    params = {**TINY, "evaluate": {**TINY["evaluate"], **evaluate}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


OUTS = ("results.parquet", "tuning.parquet", "gallery.parquet", "evaluate.json")


@pytest.mark.integration
def test_evaluate_keeps_its_outs_when_mlflow_is_unreachable(degraded, tmp_path):
    repo = project(degraded, tmp_path / "p")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done, seconds = run_stage("evaluate", repo, MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [ln for ln in done.stderr.splitlines() if f"MLflow tracking at {uri}" in ln]
    assert len(warnings) == 1 and "unreachable" in warnings[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for name in OUTS:
        assert (repo / "reports" / name).stat().st_size > 0, name
    results = pd.read_parquet(repo / "reports" / "results.parquet")
    assert len(results) == 2 and set(results.weighting) == {"unweighted", "oracle"}
    assert (results.mlflow_run_id == "").all()  # nothing was logged, nothing pretends it was
    assert not (repo / "mlflow.db").exists()  # no silent fallback to another store
    # MLflow's default client retries for minutes; the stage itself takes ~15 s here.
    assert seconds < 90, seconds


@pytest.mark.integration
def test_evaluate_refuses_more_cpus_than_a_node_offers(degraded, tmp_path):
    repo = project(degraded, tmp_path / "p", cpu=64)
    done, seconds = run_stage("evaluate", repo, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("[evaluate] error: evaluate.cpu = 64: no Ray node has 64 CPU"), last
    assert "the largest with 2 CPU" in last and "evaluate.cpu ≤ 2" in last
    assert "Traceback" not in done.stderr
    assert not (repo / "reports" / "results.parquet").exists()
    assert seconds < 60, seconds  # Ray's start and the imports; no waiting for resources


@pytest.mark.integration
def test_training_finishes_without_a_reachable_mlflow(ray_local, tmp_path, caplog):  # noqa: F811
    from pipeline.train.outputs import log_figures, write_outputs
    from pipeline.train.runner import run_training

    make_dataset(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    params = tiny_params(tmp_path, tracking_uri=uri)
    caplog.set_level(logging.WARNING, logger="tracking")
    t0 = time.monotonic()
    result = run_training(tiny_method(params), params, tmp_path)
    context = {"seed": params.seed, "data_dir": str(tmp_path / "data" / "clean")}
    metrics = write_outputs(result, params, tmp_path, context)
    assert log_figures(result, context) == 0
    seconds = time.monotonic() - t0
    (o,) = result.outcomes
    assert o.mlflow_run_id is None and [h["epoch"] for h in o.history] == [1, 2]
    assert (tmp_path / "models/dlw/tv/seed-0.pt").is_file()
    assert set(metrics["variants"]) == {"tv"}
    assert (tmp_path / "reports/train/dlw/metrics.json").is_file()
    warned = [r.getMessage() for r in caplog.records if uri in r.getMessage()]
    assert len(warned) == 1 and "unreachable" in warned[0], warned
    assert seconds < 90, seconds


@pytest.mark.integration
def test_a_gpu_request_on_a_cpu_only_ray_is_refused(ray_local, mlflow_template, tmp_path):  # noqa: F811
    from pipeline.train.runner import run_training

    if ray_local.cluster_resources().get("GPU", 0) > 0:
        pytest.skip("this machine has a GPU")
    make_dataset(tmp_path)
    sqlite_store(mlflow_template, tmp_path / "mlflow.db")
    params = tiny_params(tmp_path, gpu=1)
    t0 = time.monotonic()
    with pytest.raises(ResourceError, match=r"train\.dlw\.gpu = 1: no Ray node has 1 GPU .*0 GPU"):
        run_training(tiny_method(params), params, tmp_path)
    assert time.monotonic() - t0 < 30


def test_device_cuda_without_cuda_names_device(tmp_path):
    import torch

    from pipeline.train.runner import run_training

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    make_dataset(tmp_path)
    params = dataclasses.replace(tiny_params(tmp_path, gpu=1), device="cuda")
    with pytest.raises(ResourceError, match=r"device = 'cuda': torch sees no CUDA device"):
        run_training(tiny_method(params), params, tmp_path)


def test_device_cuda_needs_a_gpu_per_trial(tmp_path):
    from pipeline.train.runner import run_training

    make_dataset(tmp_path)
    params = dataclasses.replace(tiny_params(tmp_path), device="cuda")
    with pytest.raises(ValueError, match=r"device = cuda needs train\.dlw\.gpu > 0"):
        run_training(tiny_method(params), params, tmp_path)


@pytest.mark.parametrize(
    ("needs", "nodes", "message"),
    [
        ({"evaluate.cpu": ("CPU", 3)}, [{"CPU": 2.0}], r"evaluate\.cpu = 3: .*largest with 2 CPU"),
        # Per node, not the cluster's total: 2 + 2 CPUs do not hold a 3-CPU task.
        ({"train.dlw.cpu": ("CPU", 3)}, [{"CPU": 2.0}, {"CPU": 2.0}], r"2 node\(s\), the largest"),
        (
            {"train.dlw.gpu": ("GPU", 0.5)},
            [{"CPU": 8.0}],
            r"train\.dlw\.gpu = 0\.5: .*set train\.dlw\.gpu: 0",
        ),
        # Each fits somewhere, but no node has both.
        (
            {"train.dlw.cpu": ("CPU", 4), "train.dlw.gpu": ("GPU", 1)},
            [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}],
            r"train\.dlw\.cpu = 4, train\.dlw\.gpu = 1: no single Ray node offers all of it",
        ),
    ],
)
def test_resource_requests_are_checked_per_node(needs, nodes, message):
    with pytest.raises(ResourceError, match=message):
        check_resources(needs, nodes, "test")


def test_resource_requests_that_fit_pass():
    check_resources(
        {"train.dlw.cpu": ("CPU", 2), "train.dlw.gpu": ("GPU", 0.5)}, [{"CPU": 2, "GPU": 1}], ""
    )
    check_resources({"train.dlw.gpu": ("GPU", 0)}, [{"CPU": 1.0}], "")  # 0 asks for nothing


def test_a_top_level_typo_stops_every_stage(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 0\nsead: 3\n")
    names = ("prepare", "degrade", "train", "evaluate", "report", "check")
    args = {"train": ["dlw"]}  # the stage train@dlw
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"stages.{name}", *args.get(name, [])],
            cwd=tmp_path,
            env=stage_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (name, err)
        assert "params.yaml: sead: unknown key (did you mean 'seed'" in err, (name, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


def test_params_check_command(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "stages.check"],
        cwd=ROOT,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout == "params.yaml: OK\n", ok.stderr
    bad = tmp_path / "mine.yaml"
    bad.write_text("sead: 3\nevaluate: {cpu: 0}\n")
    done = subprocess.run(
        [sys.executable, "-m", "stages.check", str(bad)],
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"{bad}: sead: unknown key")
    assert lines[1].startswith(f"{bad}: evaluate.cpu = 0.0: must be > 0")
    assert len(lines) == 2


def test_dvc_checks_the_whole_params_file():
    """DVC reruns a stage only when its listed params change, so ``sead: 3`` (listed by no
    stage) would never run one: a ``check`` stage tracks the whole file."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    check = stages.get("check")
    assert check is not None and check["cmd"].startswith("python -m stages.check")
    assert {"params.yaml": None} in check["params"]


# --- the stage wrapper: every failure is one line naming what failed ------------------------


def wrapped(stage: str, error: BaseException | None = None, fn=None) -> tuple[object, str]:
    def main():
        if fn is not None:
            fn()
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run(stage, main)
    return exit_info.value.code


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ConfigError("params.yaml: train.dlw.lr = -1.0: must be > 0"),
            "invalid parameters: params.yaml: train.dlw.lr",
        ),
        (
            ValueError("data/x.npy: not a readable .npy array"),
            "data/x.npy: not a readable .npy array",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "in.npy"),
            "in.npy: No such file or directory",
        ),
        (
            FileNotFoundError("data/clean: run the prepare stage first"),
            "data/clean: run the prepare",
        ),
        # An atomic write's temporary file names its folder (the user's --out).
        (
            PermissionError(13, "Permission denied", "/ro/out/.summary.json.a1b2.tmp"),
            "/ro/out: Permission denied (cannot write a file there)",
        ),
        (
            RuntimeError("solver diverged\nmore detail"),
            "RuntimeError: solver diverged (DLW_DEBUG=1",
        ),
    ],
)
def test_a_failure_is_one_line(capsys, monkeypatch, error, expected):
    monkeypatch.delenv("DLW_DEBUG", raising=False)
    code = wrapped("evaluate", error)
    assert code == f"[evaluate] error: {expected}" or str(code).startswith(
        f"[evaluate] error: {expected}"
    )
    assert "\n" not in str(code)
    assert "Traceback" not in capsys.readouterr().err


def test_an_unwritable_path_is_named(tmp_path):
    from pipeline.io import write_json

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = wrapped("apply", None, fn=lambda: write_json(blocker / "out" / "summary.json", {}))
    assert str(code).startswith(f"[apply] error: {blocker}"), code


def test_mlflow_and_ray_errors_are_short():
    from mlflow.exceptions import MlflowException
    from ray.exceptions import RayTaskError

    code = wrapped("train", MlflowException("API request failed\nwith a long body"))
    assert (
        code
        == "[train] error: MLflow: API request failed (see tracking.uri / $MLFLOW_TRACKING_URI)"
    )
    remote = "Traceback (most recent call last):\n  File x\nValueError: bad cube shape (3, 4)"
    error = RayTaskError("run_group", remote, ValueError("bad cube shape (3, 4)"))
    assert wrapped("evaluate", error) == "[evaluate] error: in a Ray task: bad cube shape (3, 4)"


def test_ctrl_c_exits_130_with_a_hint(capsys):
    assert wrapped("train", KeyboardInterrupt()) == INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("[train] interrupted; rerun it (dvc repro) to resume the experiment")
    assert err.count("\n") == 1
    assert wrapped("evaluate", KeyboardInterrupt()) == INTERRUPTED
    assert "[evaluate] interrupted; rerun it" in capsys.readouterr().err


def test_dlw_debug_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("DLW_DEBUG", "1")
    code = wrapped("report", RuntimeError("boom"))
    assert code == "[report] error: RuntimeError: boom"
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err


# --- tracking errors after the start: a warning, never a lost result ------------------------


def test_a_failing_mlflow_call_turns_tracking_off_with_one_warning(caplog):
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import Tracker

    calls = []

    def fails(*args):
        calls.append(args)
        raise MlflowException("API request to endpoint failed with error code 503")

    tracker = Tracker("http://tracking.invalid:5000")
    caplog.set_level(logging.WARNING, logger="tracking")
    assert tracker.call(fails, 1, default="kept") == "kept"
    assert tracker.call(fails, 2, default="kept") == "kept"  # not called again
    assert calls == [(1,)] and not tracker.enabled
    (record,) = caplog.records
    assert "http://tracking.invalid:5000 failed (MlflowException: API request" in record.message


def test_evaluate_keeps_the_run_ids_logged_before_an_error(monkeypatch, caplog):
    from mlflow.exceptions import MlflowException

    import pipeline.evaluate.runs
    from stages.evaluate import track

    def log_runs(uri, experiment, root, result, tags, ids):
        ids[("unweighted", -1, "tv")] = "run-1"
        raise MlflowException("connection reset")

    monkeypatch.setattr(pipeline.evaluate.runs, "log_runs", log_runs)
    caplog.set_level(logging.WARNING, logger="tracking")
    ids = track("sqlite:///unused.db", "tests", Path("."), {}, {})
    assert ids == {("unweighted", -1, "tv"): "run-1"}
    assert len(caplog.records) == 1 and "connection reset" in caplog.records[0].message


def test_reachability_is_probed_with_a_short_connect():
    from pipeline.tracking import unreachable

    t0 = time.monotonic()
    assert "refused" in unreachable(f"http://127.0.0.1:{free_port()}", timeout=2).lower()
    assert time.monotonic() - t0 < 2.5
    assert unreachable("sqlite:////tmp/x.db") is None  # local stores are not probed
    assert unreachable("http://") == "no host in 'http://'"
