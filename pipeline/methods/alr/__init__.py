r"""Adversarial local regulariser, ALR (Prost, Houdard, Almansa, Papadakis, "Learning local
regularization for variational image restoration", SSVM 2021).

A critic :math:`r_\theta` of 15×15 patches is trained as a Wasserstein GAN critic with gradient
penalty to tell clean patches of some images from noisy patches of *other* images (unpaired),
scoring clean patches low. Its mean over the patches of an image is then the regulariser of a
variational restoration, solved by Adam on the image:

.. math:: \hat x \approx \operatorname{argmin}_x \tfrac12 \sum_i w_i (A x - y)_i^2
          + \lambda N \operatorname{mean}_{\text{patches}} r_\theta(x)

(:mod:`.solve`; :math:`N` the number of pixels, λ per pixel). Bands are folded into the batch:
the critic is single-band and every band of a cube is a grey image, so a part takes any number
of bands (the paper's critic takes RGB patches).

Variants (the first axis of the trial grid): ``varying`` (training noise σ ~ U[0.05, 0.30] per
patch) and single-level critics ``s<σ>`` (``s0.05``, ``s0.1``, ``s0.2``, ``s0.4``), to reproduce
the paper's finding that the varying-σ critic generalises best to high σ.

Contributions to the matrix: a **restorer** ``alr:<variant>`` of role ``target`` — it takes every
weighting :math:`w` in its fidelity — for denoising, deblurring, down-sampling and inpainting;
its strength multiplies λ (strength 1: the λ calibrated on val at σ = ``val_sigma``,
:mod:`.trainer`). No weighting.

=============  ====================================================================================
module         purpose
=============  ====================================================================================
``params``     the ``train.alr`` section (no torch)
``net``        the critic, the gradient penalty and WGAN-GP loss, the part and its loader
``solve``      the restoration: Adam on x, the starting points of the operators
``data``       unpaired clean/noisy patch batches, the fixed val crops
``trainer``    a trial: WGAN-GP steps, λ calibration and selection on val
=============  ====================================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.methods.alr.params import ALRParams, variant_sigma
from pipeline.methods.base import SCORE, Method

__all__ = ["ALR"]


class ALR(Method):
    name: ClassVar[str] = "alr"
    params_cls = ALRParams
    # The seeded streams (batches, val crops, initial weights).
    # The seeded streams, and the restorer's start points (upsample, fill).
    code: ClassVar[tuple[str, ...]] = ("seeding.py", "evaluate/operator_baselines.py")
    provides_weighting: ClassVar[bool] = False
    restorer_role: ClassVar[str | None] = "target"
    restorer_tuned: ClassVar[bool] = True
    restorer_operators: ClassVar[tuple[str, ...]] = ("identity", "blur", "downsample", "inpaint")
    params: ALRParams

    # --- training -------------------------------------------------------------------------

    def variants(self) -> list[str]:
        return list(self.params.variants)

    def trial_config(self) -> dict[str, Any]:
        p = self.params
        return {
            "widths": list(p.widths),
            "sigma_range": list(p.sigma_range),
            "groups": p.groups,
            "patch_size": p.patch_size,
            "augment": p.augment,
            "iterations": p.iterations,
            "restore_lr": list(p.restore_lr),
            "operator_iterations": p.operator_iterations,
            "operator_lr": list(p.operator_lr),
            "lam_grid": list(p.lam_grid),
            "val_sigma": p.val_sigma,
        }

    def _validation(self, context: dict[str, Any]):
        from pipeline.methods.alr.data import validation_set
        from pipeline.train.data import load_tiles

        p = self.params
        return validation_set(
            load_tiles(Path(context["data_dir"]), "val"),
            seed=int(context["seed"]),
            patches=p.val_patches,
            size=p.val_size,
            sigma=p.val_sigma,
        )

    def trainer(self, config: dict[str, Any], context: dict[str, Any]):
        from pipeline.methods.alr.trainer import Trainer, TrialSpec
        from pipeline.train.data import load_tiles

        # The nets' arithmetic is not a hyper-parameter: read from the section.
        spec = TrialSpec.from_config(
            config, seed=int(context["seed"]), precision=self.params.precision
        )
        tiles = list(load_tiles(Path(context["data_dir"]), "train").values())
        return Trainer(spec, tiles, self._validation(context), context["device"])

    def describe(self) -> str:
        p = self.params
        return (
            f"{super().describe()}; {p.epochs} epochs × {p.steps_per_epoch} steps, batch "
            f"{p.batch_size}, {p.patch_size}² patches, critic widths {list(p.widths)}"
        )

    def progress(self, result: dict[str, Any]) -> str:
        nan = float("nan")
        return (
            f"W {result.get('wasserstein', nan):.3f} (val {result.get('val_wasserstein', nan):.3f})"
            f"  gp {result.get('gp', nan):.3f}  val gain {result.get(SCORE, nan):+.2f} dB at "
            f"λ {result.get('val_lam', nan):g}"
        )

    def part_record(self, config: dict[str, Any]) -> dict[str, Any]:
        sigma = variant_sigma(config["variant"])
        return {
            "noise": "varying" if sigma is None else f"sigma {sigma:g}",
            "sigma_range": list(config["sigma_range"]) if sigma is None else [sigma, sigma],
            "groups": config["groups"],
            "net": {"name": "alr-critic", "widths": list(config["widths"]), "patch": 15},
            "restore": {
                "iterations": int(config["iterations"]),
                "lr": list(config["restore_lr"]),
                "operator_iterations": int(config["operator_iterations"]),
                "operator_lr": list(config["operator_lr"]),
            },
            "weighting": False,
            "restorer_operators": list(self.restorer_operators),
        }

    # --- contributions to the matrix ------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu"):
        from pipeline.methods.alr.net import load_alr

        return load_alr(path, device)

    @classmethod
    def restore(
        cls, part: Any, noisy: np.ndarray, w: np.ndarray | None, strength: float, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Adam on x of ½ Σ w (A x − y)² + strength · λ · N · R(x) (:mod:`.solve`): float32
        (C, H, W) (the high-resolution grid for down-sampling) and ``{"iterations",
        "converged": True}``. ``w`` on y's grid (None: 1)."""
        from pipeline.degrade.operators import operator_kind
        from pipeline.methods.alr.solve import restore_cube

        kind = operator_kind(A)
        if kind not in cls.restorer_operators:
            raise ValueError(f"alr restorer: takes {list(cls.restorer_operators)}, not {kind}")
        return restore_cube(part, noisy, w, strength, A)

    @classmethod
    def report_sections(cls, results, lb, options) -> list:
        """The critics' training σ × test σ matrix, ALR against BM3D/BM4D per σ, and the
        paper's generalisation claim, paired over images (:mod:`pipeline.methods.alr.report`)."""
        from pipeline.methods.alr.report import report_sections

        return report_sections(results, lb, options)
