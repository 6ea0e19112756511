"""MLflow set-up and logging helpers.

The tracking URI comes from params (``tracking.uri``), else ``$MLFLOW_TRACKING_URI``, else an
embedded SQLite file at the repository root (``sqlite:////abs/repo/mlflow.db``: absolute, so a
worker or the ``mlflow ui`` started elsewhere finds the same store). MLflow refuses the plain
file store, and two processes creating a new SQLite store at once collide in its migrations, so
the driver creates the store and the experiment before any trial starts, and the driver-side
logger callback is the only writer while trials run. mlflow is imported inside the functions.

Tracking is a record of the results, never a condition for keeping them: a :class:`Tracker`
checks an HTTP server's reachability with a short connection attempt before the first call,
and turns an unreachable server or any later MLflow error into one warning, after which the
stage logs nothing more and finishes with its local outputs. MLflow's own HTTP client retries a
failed request 7 times with exponential backoff (minutes); :func:`disable_telemetry` also caps
that to a few seconds unless the environment sets the variables itself.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = [
    "Tracker",
    "disable_telemetry",
    "ensure_experiment",
    "find_runs",
    "log_artifact",
    "resolve_tracking_uri",
    "unreachable",
]

log = logging.getLogger("tracking")
T = TypeVar("T")

TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
}

# MLflow's HTTP client (mlflow.environment_variables): 2 retries, 1 s backoff factor and a 10 s
# timeout per request, instead of 7 retries, factor 2 and 120 s (≈ 4 minutes per call when the
# server is gone). A server that answers slowly still gets 10 s per request.
HTTP_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

# Seconds to wait for a TCP connection to an HTTP tracking server before calling it unreachable.
CONNECT_TIMEOUT_S = 3.0


def disable_telemetry() -> None:
    """No usage reporting from MLflow, Ray or DVC (unless the caller's environment says
    otherwise explicitly)."""
    for key, value in {**TELEMETRY_OFF, **HTTP_CLIENT}.items():
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


def unreachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the tracking server of an ``http(s)://`` URI cannot be reached (a TCP connection
    within ``timeout`` seconds), or None. Other stores (SQLite, databases) are not probed: their
    errors surface at the first call."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"invalid port in {uri!r}"
    if not parts.hostname:
        return f"no host in {uri!r}"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


# URIs already warned about in this process: a stage warns once, however many parts log.
_warned: set[str] = set()


class Tracker:
    """The tracking state of one stage: on until the server is found unreachable or a call
    fails, then off for the rest of the stage, with one warning naming the URI."""

    def __init__(self, uri: str):
        self.uri = uri
        self.problem: str | None = None

    @property
    def enabled(self) -> bool:
        return self.problem is None

    def check(self) -> bool:
        """Probe the server once (HTTP URIs); returns whether tracking is on."""
        if self.enabled:
            reason = unreachable(self.uri)
            if reason is not None:
                self.disable(f"unreachable: {reason}")
        return self.enabled

    def disable(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem
        if self.uri not in _warned:
            _warned.add(self.uri)
            log.warning(
                "MLflow tracking at %s %s; results are kept locally, nothing more is logged "
                "to MLflow",
                self.uri,
                problem,
            )

    def call(self, fn: Callable[..., T], *args: Any, default: Any = None, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, or ``default`` once tracking is off or if the call fails
        (any error of MLflow, its HTTP client or its database turns tracking off)."""
        if not self.enabled:
            return default
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # tracking must never lose a stage's results
            log.debug("MLflow call %s failed", getattr(fn, "__name__", fn), exc_info=True)
            self.disable(f"failed ({_short(exc)})")
            return default


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
