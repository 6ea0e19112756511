"""The Ray Tune function trainable of a DLW trial (docs/architecture.md).

Each epoch it reports its metrics and a checkpoint (``tune.report``); a trial restarted after a
crash (``FailureConfig``) or by ``Tuner.restore`` finds its last checkpoint with
``tune.get_checkpoint()`` and continues from it — same weights, optimiser state, learning rate
and batch stream — reporting ``restored_from_epoch``. torch's threads are pinned to the CPUs the
trial holds, so trials sharing a machine do not oversubscribe it and step times compare.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_FILE", "resolve_device", "train_dlw"]

CHECKPOINT_FILE = "trainer.pt"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = cuda, but this trial sees no CUDA device (set train.gpu > 0)")
    return device


def train_dlw(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Run one trial. ``config`` is the trial's Tune config (source set, seed index,
    hyper-parameters, noise); ``context`` what every trial shares (global seed, data folder,
    validation models and set, device, threads)."""
    import torch
    from ray import tune

    from pipeline.degrade.registry import Case
    from pipeline.train.checkpoint import load_checkpoint, save_checkpoint
    from pipeline.train.data import load_tiles, validation_set
    from pipeline.train.trainer import Trainer, TrialSpec

    started = time.process_time()
    torch.set_num_threads(max(1, int(context["threads"])))
    spec = TrialSpec.from_config(config, seed=context["seed"], val_models=context["val_models"])
    noise = Case.from_param(spec.noise, "train.noise")
    data_dir = Path(context["data_dir"])
    val = validation_set(
        load_tiles(data_dir, "val"),
        seed=spec.seed,
        patches=context["val_patches"],
        patch_size=context["val_patch_size"],
        noise=noise,
    )
    tiles = list(load_tiles(data_dir, "train").values())
    trainer = Trainer(spec, tiles, val, resolve_device(context["device"]))

    restored_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / CHECKPOINT_FILE, trainer.device))
        restored_from = trainer.epoch

    while trainer.epoch < spec.epochs:
        cpu = time.process_time()
        metrics = trainer.run_epoch()
        metrics["restored_from_epoch"] = restored_from
        # CPU seconds of the epoch: the cost of a trial even on a shared, busy machine.
        metrics["epoch_cpu_s"] = time.process_time() - cpu
        metrics["trial_cpu_s"] = time.process_time() - started  # set-up included
        with tempfile.TemporaryDirectory(prefix="dlw-ckpt-") as folder:
            save_checkpoint(Path(folder) / CHECKPOINT_FILE, trainer.state_dict())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
