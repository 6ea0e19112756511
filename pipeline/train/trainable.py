"""The Ray Tune function trainable of every method's trials (docs/architecture.md).

Each epoch it reports the trainer's metrics and a checkpoint (``tune.report``); a trial restarted
after a crash (``FailureConfig``) or by ``Tuner.restore`` finds its last checkpoint with
``tune.get_checkpoint()`` and continues from it — same weights, optimiser state, learning rate
and batch stream — reporting ``restored_from_epoch``. torch's threads are pinned to the CPUs the
trial holds, so trials sharing a machine do not oversubscribe it and step times compare.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_FILE", "resolve_device", "train_trial"]

CHECKPOINT_FILE = "trainer.pt"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = cuda, but this trial sees no CUDA device (set its gpu > 0)")
    return device


def train_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Run one trial. ``config`` is the trial's Tune config (variant, seed index,
    hyper-parameters, the method's constants); ``context`` what every trial shares (the method
    class and its params, global seed, data folder, device, threads)."""
    import torch
    from ray import tune

    from pipeline.checkpoint import load_checkpoint, save_checkpoint

    started = time.process_time()
    torch.set_num_threads(max(1, int(context["threads"])))
    method = context["method"].from_plain(context["params"])
    shared = {**context, "device": resolve_device(context["device"])}
    trainer = method.trainer(config, shared)

    restored_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder) / CHECKPOINT_FILE, shared["device"])
            trainer.load_state_dict(state)
        restored_from = trainer.epoch

    while trainer.epoch < int(config["epochs"]):
        cpu = time.process_time()
        metrics = trainer.run_epoch()
        metrics["restored_from_epoch"] = restored_from
        # CPU seconds of the epoch: the cost of a trial even on a shared, busy machine.
        metrics["epoch_cpu_s"] = time.process_time() - cpu
        metrics["trial_cpu_s"] = time.process_time() - started  # set-up included
        with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
            save_checkpoint(Path(folder) / CHECKPOINT_FILE, trainer.state_dict())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
