r"""Regularising gradients for multi-task image restoration (Willingham, Sjöström, Guillemot,
"Regularising gradients for multi-task image restoration", VISAPP 2024).

A network :math:`G_\phi` models the gradient of a regulariser inside gradient descent on the
(weighted) fidelity,

.. math:: T(x) = x - \tau\bigl(A^\top W (A x - y) + \lambda G_\phi(x)\bigr),\qquad
          x_{k+1} = T(x_k),

one :math:`G_\phi` shared by every task (denoising, super-resolution, inpainting, deblurring).
At test time the fixed point :math:`x^* = T(x^*)` is found to a relative-change tolerance by
Anderson acceleration (:mod:`.solver`). Four ways to train it are the variants (:mod:`.trainer`):
``denoiser`` (score matching), ``bound`` (the contraction bound
:math:`\|x^* - \bar x\| \le \|T(\bar x) - \bar x\| / (1 - L)`), ``deqgd`` (the fixed point's
error, implicit gradient) and ``rerg`` (both). The bound, the four losses and the architecture
are this project's formulation: the paper's own text of them was not available. Bands are
folded into the batch: every band of a cube is a grey image, so the method takes any number of
bands.

Contribution to the matrix: a **restorer** ``rg:<variant>`` of role ``target`` (it takes every
weighting: :math:`W = \operatorname{diag}(w)`) on every operator kind, whose strength multiplies
:math:`\lambda` (tuned on val). No weighting.

=============  ====================================================================================
module         purpose
=============  ====================================================================================
``params``     the ``train.rg`` section (no torch)
``net``        GradNet :math:`G_\phi`, RGNet (with λ and τ), the checkpoint loader
``solver``     the GD map, its fixed point (torchdeq), the Lipschitz estimate, the bound, a cube
``data``       the tasks, training batches and the fixed validation set
``trainer``    a trial: the four variants, best epoch on val
=============  ====================================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.methods.base import SCORE, Method, check_restore_inputs
from pipeline.methods.rg.params import RGParams

__all__ = ["RG"]


class RG(Method):
    name: ClassVar[str] = "rg"
    params_cls = RGParams
    # The training operators (Blur, Downsampling, Inpainting, exact Gaussians, random masks),
    # the starts (upsample, fill) and the seeded streams.
    code: ClassVar[tuple[str, ...]] = (
        "degrade",
        "data/dataset.py",
        "evaluate/operator_baselines.py",
        "seeding.py",
    )
    provides_weighting: ClassVar[bool] = False
    restorer_role: ClassVar[str | None] = "target"
    restorer_tuned: ClassVar[bool] = True
    restorer_operators: ClassVar[tuple[str, ...]] = ("identity", "blur", "downsample", "inpaint")
    operators: ClassVar[tuple[str, ...]] = restorer_operators  # the name evaluate reads
    params: RGParams

    # --- training -------------------------------------------------------------------------

    def variants(self) -> list[str]:
        return self.params.variant_names()

    def trial_config(self) -> dict[str, Any]:
        p = self.params
        return {
            "lam": p.lam,
            "learn_lam": p.learn_lam,
            "lipschitz_cap": p.lipschitz_cap,
            "cap_penalty": p.cap_penalty,
            "power_iters": p.power_iters,
            "score_percent": list(p.score_percent),
            "train_max_iter": p.train_max_iter,
            "train_tol": p.train_tol,
            "backward_max_iter": p.backward_max_iter,
            "backward_tol": p.backward_tol,
            "anderson_m": p.anderson_m,
            "solver": p.solver,
            "max_iter": p.max_iter,
            "tol": p.tol,
            "tasks": list(p.tasks),
            "noise_percent": list(p.noise_percent),
            "blur_sigma": list(p.blur_sigma),
            "factor": p.factor,
            "missing": p.missing,
            "augment": p.augment,
        }

    def _validation(self, context: dict[str, Any]):
        from pipeline.methods.rg.data import Degradation, validation_set
        from pipeline.train.data import load_tiles

        p = self.params
        deg = Degradation(
            tuple(p.tasks), tuple(p.noise_percent), tuple(p.blur_sigma), p.factor, p.missing
        )
        return validation_set(
            load_tiles(Path(context["data_dir"]), "val"),
            seed=int(context["seed"]),
            patches=p.val_patches,
            patch_size=p.patch_size,
            deg=deg,
        )

    def trainer(self, config: dict[str, Any], context: dict[str, Any]):
        from pipeline.methods.rg.trainer import Trainer, TrialSpec
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
            f"{p.batch_size}, {p.patch_size}² patches, width {p.width}, depth {p.depth}, "
            f"tasks {'/'.join(p.tasks)}"
        )

    def progress(self, result: dict[str, Any]) -> str:
        nan = float("nan")
        tasks = "  ".join(
            f"{k.removeprefix('val_psnr_')} {v:.2f}"
            for k, v in result.items()
            if k.startswith("val_psnr_") and k != "val_psnr_start"
        )
        return (
            f"loss {result.get('train_loss', nan):.2e}  λ {result.get('lam', nan):.2e}  val PSNR "
            f"{result.get(SCORE, nan):.2f} dB ({tasks})  L {result.get('val_lipschitz', nan):.3f}"
            f"  {result.get('val_evaluations', nan):.0f} evals"
        )

    def part_record(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "variant": config["variant"],
            "net": {
                "name": "gradnet",
                "width": int(config["width"]),
                "depth": int(config["depth"]),
                "tau": float(config["tau"]),
                "lam_init": float(config["lam"]),
                "learn_lam": bool(config["learn_lam"]) and config["variant"] != "denoiser",
            },
            "solver": {
                "name": config["solver"],
                "max_iter": int(config["max_iter"]),
                "tol": float(config["tol"]),
                "anderson_m": int(config["anderson_m"]),
            },
            "tasks": list(config["tasks"]),
            "weighting": False,
            "restorer_operators": list(self.restorer_operators),
        }

    # --- contributions to the matrix ------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu"):
        from pipeline.methods.rg.net import load_rg

        return load_rg(path, device)

    @classmethod
    def restore(
        cls, part: Any, noisy: np.ndarray, w: np.ndarray | None, strength: float, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        r"""The fixed point of :math:`T` (strength :math:`s`: :math:`\lambda \to s\lambda`) for
        ``noisy`` (C, h, w) on the grid of ``A``'s output (the clean grid but for
        super-resolution), weights ``w`` of its shape (None: 1). Returns the (C, H, W) float32
        estimate and ``iterations`` (T evaluations of the slowest chunk of bands),
        ``converged``, ``primal_residual`` (largest relative change), ``time``."""
        from pipeline.methods.rg.solver import restore_cube

        y, w = check_restore_inputs("rg restorer", noisy, w, strength)
        return restore_cube(part, y, w, float(strength), A, **part.solve_settings)

    @classmethod
    def report_sections(cls, results, lb, options) -> list:
        """Every training on every task, the worst-task ranking and the paper's claim about
        rerg, paired over images (:mod:`pipeline.methods.rg.report`)."""
        from pipeline.methods.rg.report import report_sections

        return report_sections(results, lb, options)
