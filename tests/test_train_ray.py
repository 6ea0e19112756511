"""Training (the DLW method through the generic runner) with the real engines: a local Ray run
logging to SQLite MLflow, the same against a real ``mlflow server``, and through a real two-node
Ray cluster; a trial whose worker is killed finishes from its checkpoint; an interrupted stage
``train@dlw`` resumes its experiment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from ray_fixtures import (
    finish,
    free_port,
    make_dataset,
    mlflow_template,  # noqa: F401
    ray_local,  # noqa: F401
    sqlite_store,
    tiny_method,
    tiny_params,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration


def mlflow_runs(uri: str, experiment: str = "tests"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def check_run_recorded(uri: str, result, epochs: int) -> None:
    """One FINISHED MLflow run per trial, with its params, per-epoch metrics and picture."""
    client, runs = mlflow_runs(uri)
    by_trial = {
        r.data.tags["ray_trial_id"]: r
        for r in runs
        if r.data.tags.get("ray_experiment") == result.experiment
    }
    assert len(by_trial) == len(result.outcomes)
    for o in result.outcomes:
        run = by_trial[o.trial_id]
        assert o.mlflow_run_id == run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params["variant"] == o.variant
        assert run.data.tags["method"] == "dlw"
        for key in ("val_mpsnr", "val_score", "train_loss"):
            assert key in run.data.metrics, key
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mpsnr")]
        assert sorted(steps) == list(range(1, epochs + 1))
        assert "dlw.png" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_local_ray_two_trials_log_to_sqlite(ray_local, mlflow_template, tmp_path):  # noqa: F811
    from pipeline.train.runner import run_training

    make_dataset(tmp_path)
    sqlite_store(mlflow_template, tmp_path / "mlflow.db")
    params = tiny_params(tmp_path, source_models=["tv", "nn"], source_sets=[["tv"], ["nn"]])
    method = tiny_method(params)
    result = run_training(method, params, tmp_path)
    assert not result.resumed and len(result.outcomes) == 2
    assert result.method is method and result.experiment.startswith("dlw-")
    metrics = finish(result, params, tmp_path)
    check_run_recorded(params.tracking.uri, result, epochs=2)
    assert metrics["method"] == "dlw" and set(metrics["variants"]) == {"nn", "tv"}
    assert set(metrics["unweighted"]) == {"val_mpsnr_tv", "val_mpsnr_nn"}
    for name in ("nn", "tv"):
        state = torch.load(tmp_path / f"models/dlw/{name}/seed-0.pt", weights_only=True)
        assert "head.weight" in state
        info = json.loads((tmp_path / f"models/dlw/{name}/seed-0.json").read_text())
        assert info["mlflow_run_id"] and info["ray_trial_id"] and info["dataset_hash"]
    assert (tmp_path / "reports/train/dlw/curves/nn.csv").is_file()

    # A finished experiment is restored, not rerun.
    again = run_training(tiny_method(params), params, tmp_path)
    assert again.resumed and [o.trial_id for o in again.outcomes] == [
        o.trial_id for o in result.outcomes
    ]


def test_killed_worker_resumes_from_its_checkpoint(ray_local, mlflow_template, tmp_path):  # noqa: F811
    from ray.tune import Callback

    from pipeline.train.runner import run_training

    class KillOnce(Callback):
        """SIGKILL the trial's worker process once its first checkpoint is registered (Tune
        registers a reported checkpoint after the result, in a separate save step)."""

        pid: int | None = None
        killed: ClassVar[list[int]] = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            KillOnce.pid = result["pid"]

        def on_trial_save(self, iteration, trials, trial, **info):
            if not self.killed and self.pid is not None:
                self.killed.append(self.pid)
                os.kill(self.pid, signal.SIGKILL)

    make_dataset(tmp_path)
    sqlite_store(mlflow_template, tmp_path / "mlflow.db")
    params = tiny_params(tmp_path, epochs=3, steps_per_epoch=40, max_failures=2)
    result = run_training(tiny_method(params), params, tmp_path, callbacks=[KillOnce()])
    assert KillOnce.killed, "the worker was never killed"
    (o,) = result.outcomes
    assert [h["epoch"] for h in o.history] == [1, 2, 3]  # no epoch lost, none repeated
    assert o.metrics["restored_from_epoch"] >= 1
    assert o.metrics["pid"] != KillOnce.killed[0]
    finish(result, params, tmp_path)
    check_run_recorded(params.tracking.uri, result, epochs=3)  # still one run, FINISHED


@pytest.fixture(scope="module", autouse=True)
def _mlflow_server_process(tmp_path_factory, mlflow_template):  # noqa: F811
    """Start ``mlflow server`` when the module starts: it boots (≈ 10–20 s) while the first
    tests run. Its store is a copy of the migrated template; stopped by its process group."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(mlflow_template, folder / "m.db")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder}/m.db",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def mlflow_server(_mlflow_server_process):
    proc, uri = _mlflow_server_process
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return uri
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("mlflow server did not start")
        time.sleep(0.3)


def test_logging_to_a_real_mlflow_server(ray_local, mlflow_server, tmp_path):  # noqa: F811
    from pipeline.train.runner import run_training

    make_dataset(tmp_path)
    params = tiny_params(
        tmp_path,
        tracking_uri=mlflow_server,
        source_models=["tv", "nn"],
        source_sets=[["tv"], ["nn"]],
    )
    result = run_training(tiny_method(params), params, tmp_path)
    finish(result, params, tmp_path)
    check_run_recorded(mlflow_server, result, epochs=2)
    assert not (tmp_path / "mlflow.db").exists()  # nothing fell back to the embedded store


CLUSTER_SCRIPT = """
import json, logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO)
import ray
# Wait until both nodes have joined, then leave: run_training joins through RAY_ADDRESS itself.
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
deadline = time.monotonic() + 90
while sum(1 for n in ray.nodes() if n["Alive"]) < 2 and time.monotonic() < deadline:
    time.sleep(0.2)
nodes = sum(1 for n in ray.nodes() if n["Alive"])
ray.shutdown()
sys.path.insert(0, {tests!r})
from ray_fixtures import tiny_method, tiny_params
from pipeline.train.runner import run_training
root = Path({root!r})
params = tiny_params(root, source_models=["tv", "nn"], source_sets=[["tv"], ["nn"]])
result = run_training(tiny_method(params), params, root)
print(json.dumps({{"nodes": nodes, "experiment": result.experiment,
                  "trials": [[o.variant, o.trial_id, o.mlflow_run_id] for o in result.outcomes],
                  "uri": params.tracking.uri}}))
"""


def _ray_start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(procs: list[subprocess.Popen], temp: str) -> None:
    """Stop the cluster we started: our `ray start --block` processes (they take their Ray
    processes down), then any leftover process of this cluster's own temp dir, by PID."""
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5  # a graceful stop can take half a minute: not worth it
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 15
    while _pids_using(temp) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _pids_using(temp):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_using(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_training_through_a_two_node_cluster(mlflow_template, tmp_path):  # noqa: F811
    make_dataset(tmp_path)
    sqlite_store(mlflow_template, tmp_path / "mlflow.db")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    procs = [
        _ray_start(
            [
                "--head",
                f"--port={port}",
                "--num-cpus=1",
                f"--temp-dir={temp}",
                "--include-dashboard=false",
            ],
            env,
        )
    ]
    try:
        address = f"127.0.0.1:{port}"
        _wait_for_port(port, procs[0])
        procs.append(_ray_start([f"--address={address}", "--num-cpus=1"], env))
        script = CLUSTER_SCRIPT.format(tests=str(Path(__file__).parent), root=str(tmp_path))
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, "RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "joining the Ray cluster" in done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["nodes"] == 2
        assert sorted(t[0] for t in out["trials"]) == ["nn", "tv"]
        _, runs = mlflow_runs(out["uri"])
        assert {r.info.run_id for r in runs} == {t[2] for t in out["trials"]}
        assert all(r.info.status == "FINISHED" for r in runs)
    finally:
        _stop(procs, temp)
        shutil.rmtree(temp, ignore_errors=True)
    assert not _pids_using(temp)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until the head's GCS accepts connections."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "ray start --head exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no Ray head on port {port}")


STAGE_PARAMS = {
    "ray": {"num_cpus": 2},
    "train": {
        "methods": ["dlw"],
        "dlw": {
            "source_models": ["tv", "nn"],
            "source_sets": [["tv"], ["nn"]],
            "width": 4,
            "depth": 1,
            "patch_size": 16,
            "batch_size": 2,
            "epochs": 3,
            "steps_per_epoch": 20,
            "val_patches": 1,
        },
    },
}


def _stage(repo: Path, env: dict) -> subprocess.Popen:
    """``python -m stages.train dlw``: the command of DVC's stage ``train@dlw``."""
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", "dlw"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _registered_checkpoint(ray_dir: Path) -> bool:
    """A trial whose first checkpoint the driver has processed. The trainable writes
    ``checkpoint_000000`` before the driver has taken its report, and a Ctrl-C in between
    leaves an experiment that does not know the checkpoint; the driver writes ``result.json``
    once it has processed the report."""
    for trial in ray_dir.glob("dlw-*/*/"):
        result = trial / "result.json"
        if (trial / "checkpoint_000000").is_dir() and result.is_file() and result.stat().st_size:
            return True
    return False


def test_interrupted_stage_resumes_its_experiment(mlflow_template, tmp_path):  # noqa: F811
    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "params.yaml").write_text(yaml.safe_dump(STAGE_PARAMS, sort_keys=False))
    make_dataset(repo)
    sqlite_store(mlflow_template, repo / "mlflow.db")  # where the stage's default store lives
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)

    first = _stage(repo, env)
    deadline = time.monotonic() + 180
    while not _registered_checkpoint(repo / "runs" / "ray"):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint within 3 minutes"
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGINT)  # Ctrl-C of the driver
    log1 = first.communicate(timeout=120)[0]
    assert first.returncode != 0 and "rerun the stage to resume it" in log1, log1[-3000:]
    assert not (repo / "models" / "dlw").exists()

    second = _stage(repo, env)
    log2 = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log2[-3000:]
    assert "resuming experiment" in log2
    for name in ("tv", "nn"):
        info = json.loads((repo / f"models/dlw/{name}/seed-0.json").read_text())
        assert info["epochs_trained"] == 3 and info["mlflow_run_id"]
    metrics = json.loads((repo / "reports/train/dlw/metrics.json").read_text())
    assert set(metrics["variants"]) == {"nn", "tv"} and metrics["trials"] == 2
    curves = (repo / "reports/train/dlw/curves/tv.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in curves[1:]] == ["1", "2", "3"]
    # The resumed trials continued from their checkpoints: no epoch was trained twice.
    client, runs = mlflow_runs(f"sqlite:///{repo / 'mlflow.db'}", "dlw-bench")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    resumed_from = [r.data.metrics["restored_from_epoch"] for r in runs]
    assert max(resumed_from) >= 1, resumed_from
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")]
        assert sorted(set(steps)) == [1, 2, 3]
