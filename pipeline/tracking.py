"""MLflow set-up and logging helpers (DESIGN §2).

The tracking URI comes from params (``tracking.uri``), else ``$MLFLOW_TRACKING_URI``, else an
embedded SQLite file at the repository root (``sqlite:////abs/repo/mlflow.db``: absolute, so a
worker or the ``mlflow ui`` started elsewhere finds the same store). MLflow refuses the plain
file store, and two processes creating a new SQLite store at once collide in its migrations, so
the driver creates the store and the experiment before any trial starts, and the driver-side
logger callback is the only writer while trials run. mlflow is imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "disable_telemetry",
    "ensure_experiment",
    "find_runs",
    "log_artifact",
    "resolve_tracking_uri",
]

TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
}


def disable_telemetry() -> None:
    """No usage reporting from MLflow, Ray or DVC (unless the caller's environment says
    otherwise explicitly)."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def resolve_tracking_uri(uri: str | None, root: str | os.PathLike) -> str:
    """params → ``$MLFLOW_TRACKING_URI`` → ``sqlite:///<root>/mlflow.db``; a relative SQLite
    path is made absolute against ``root``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    root = Path(root).resolve()
    if uri is None:
        return f"sqlite:///{root / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{root / uri[len('sqlite:///') :]}"
    if "://" not in uri:  # a bare path is MLflow's file store, which it refuses: SQLite instead
        raise ValueError(
            f"tracking.uri = {uri!r}: give a URI (sqlite:///path/mlflow.db or http://host:port)"
        )
    return uri


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:")


def ensure_experiment(uri: str, name: str, root: str | os.PathLike) -> str:
    """The id of experiment ``name``, created if needed (with a local store: artifacts under
    ``<root>/mlartifacts``, an absolute location independent of the working directory)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if is_local_store(uri):
        location = (Path(root).resolve() / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another driver: use theirs
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_runs(uri: str, experiment_id: str, tags: dict[str, str]) -> list[Any]:
    """Runs of the experiment whose tags equal ``tags``, newest first."""
    from mlflow.tracking import MlflowClient

    query = " and ".join(f"tags.{k} = '{_quote(v)}'" for k, v in tags.items())
    return MlflowClient(tracking_uri=uri).search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]
    )


def log_artifact(uri: str, run_id: str, path: str | os.PathLike, folder: str | None = None) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).log_artifact(run_id, str(path), folder)


def _quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")
