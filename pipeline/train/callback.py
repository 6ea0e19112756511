"""The driver-side MLflow logger: one MLflow run per Tune trial, the single writer of the store.

Ray's :class:`~ray.air.integrations.mlflow.MLflowLoggerCallback`, with three changes:

- each run is tagged with the trial id and the Ray experiment (``ray_trial_id``,
  ``ray_experiment``), so results can be joined to their run after ``fit()``;
- a trial of a resumed experiment (``Tuner.restore``) or retried after a crash continues its
  existing run instead of opening a second one;
- metrics and parameters are written with one ``log_batch`` call per report instead of one
  request per value (a SQLite store commits each request).
- an unreachable tracking server or a failing MLflow call never stops the training: it is
  one warning (:class:`pipeline.tracking.Tracker`), and the trials go on without logging.

Import this module only where Ray is wanted: it imports Ray.
"""

from __future__ import annotations

import time
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

__all__ = ["MlflowCallback", "progress_callback"]

# Ray bookkeeping that is not a metric of the trial.
NOT_METRICS = {"pid", "timestamp", "done", "time_since_restore", "iterations_since_restore"}


class MlflowCallback(MLflowLoggerCallback):
    def __init__(self, tracking_uri: str, experiment_name: str, ray_experiment: str, **tags: str):
        super().__init__(
            tracking_uri=tracking_uri,
            experiment_name=experiment_name,
            tags={"ray_experiment": ray_experiment, **tags},
            save_artifact=False,  # a trial's picture is logged by the driver after fit
        )
        self.ray_experiment = ray_experiment

    def setup(self, *args, **kwargs):
        from pipeline.tracking import Tracker

        # A new tracker per fit: a restored experiment probes the server again.
        self.tracker = Tracker(self.tracking_uri)
        self._trial_runs = {}
        if self.tracker.check():
            self.tracker.call(super().setup, *args, **kwargs)
        if self.tags is None:
            self.tags = {}

    def _enabled(self) -> bool:
        tracker = getattr(self, "tracker", None)
        return tracker is not None and tracker.enabled

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _existing_run(self, trial) -> str | None:
        from pipeline.tracking import find_runs

        runs = find_runs(
            self.tracking_uri,
            self.mlflow_util.experiment_id,
            {"ray_experiment": self.ray_experiment, "ray_trial_id": trial.trial_id},
        )
        return runs[0].info.run_id if runs else None

    def log_trial_start(self, trial) -> None:
        if self._enabled():
            self.tracker.call(self._start, trial)

    def _start(self, trial) -> None:
        if trial not in self._trial_runs:
            run_id = self._existing_run(trial)
            if run_id is not None:
                self._client().update_run(run_id, status="RUNNING")
            else:
                tags = {**self.tags, "trial_name": str(trial), "ray_trial_id": trial.trial_id}
                run_id = self.mlflow_util.start_run(tags=tags, run_name=str(trial)).info.run_id
            self._trial_runs[trial] = run_id
            self._log_params(self._trial_runs[trial], trial.config)

    def _log_params(self, run_id: str, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        client = self._client()
        logged = client.get_run(run_id).data.params
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items() if k not in logged]
        if params:
            client.log_batch(run_id, params=params)

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        if self._enabled() and trial in self._trial_runs:
            self.tracker.call(self._result, iteration, trial, result)

    def _result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(result.get("epoch") or result.get("training_iteration") or iteration)
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in NOT_METRICS
        ]
        self._client().log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._trial_runs.pop(trial, None)
        if run_id is not None and self._enabled():
            status = "FAILED" if failed else "FINISHED"
            self.tracker.call(self._client().set_terminated, run_id, status=status)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"noise": {"name": "impulse"}}`` → ``{"noise/name": "impulse"}`` (Ray's convention)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}/"))
        else:
            out[key] = v
    return out


def progress_callback(method):
    """A Tune callback logging one line per trial report (instead of Tune's tables), with the
    method's own metrics (:meth:`pipeline.methods.base.Method.progress`)."""
    import logging

    from ray.tune import Callback

    log = logging.getLogger("train")

    class Progress(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            c = trial.config
            log.info(
                "%s seed %s  epoch %s/%s  %s  (%.1f s)",
                c.get("variant"),
                c.get("seed_index"),
                result.get("epoch"),
                c.get("epochs"),
                method.progress(result),
                result.get("time_this_iter_s", float("nan")),
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            log.warning(
                "%s seed %s: trial %s failed (retried up to its max_failures)",
                trial.config.get("variant"),
                trial.config.get("seed_index"),
                trial.trial_id,
            )

    return Progress()
