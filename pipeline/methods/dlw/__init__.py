r"""DLW: a learned weight map for the data fidelity (Rui, Cao, Zhao, Meng, Ng, arXiv 2301.06081,
SIAM J. Imaging Sci.; docs/science.md).

A network :math:`h_\theta` maps the noisy image to per-pixel weights
:math:`w = N\,\mathrm{softmax}(h_\theta(Y)) + 10^{-4}`; it is trained by the bilevel problem
:math:`\min_\theta \frac{1}{|\mathcal T|}\sum_{t\in\mathcal T} \|X_t(\theta) - \bar X\|^2` with
:math:`X_t` the unrolled solution of source model :math:`t` (:mod:`.bilevel`), and its map is then
used by *any* variational target solved to convergence: the method contributes a **weighting**
``dlw:<source set>`` to the matrix.

=============  ====================================================================================
module         purpose
=============  ====================================================================================
``params``     the ``train.dlw`` section (no torch)
``net``        DLWnet and the loader of its checkpoints
``bilevel``    upper loss, one bilevel step, validation MPSNR (pure torch)
``data``       its training batches and fixed validation set
``trainer``    a trial: net, optimiser, schedule, collapse guard, best epoch on val
``figure``     the picture of a predicted weight map
=============  ====================================================================================

Variants are source sets (``nn+tv``); a trial is (source set, seed, searched values).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.methods.base import SCORE, Method
from pipeline.methods.dlw.params import DLWParams
from pipeline.schema import require

__all__ = ["DLW"]


class DLW(Method):
    name: ClassVar[str] = "dlw"
    params_cls = DLWParams
    # The source models' unrolled solves, the training noise and the seeded streams.
    code: ClassVar[tuple[str, ...]] = ("models", "degrade", "seeding.py")
    provides_weighting: ClassVar[bool] = True
    params: DLWParams

    def check(self, where: str) -> None:
        from pipeline.models.registry import source_models

        known = source_models()
        for i, m in enumerate(self.params.source_models):
            require(
                m in known,
                f"{where}.source_models[{i}]",
                m,
                f"not a source model (models with an unrolled solve: {', '.join(known)})",
            )

    def variants(self) -> list[str]:
        """Source sets, most expensive first: more models, then the costlier unrolled solves."""
        from pipeline.models.registry import MODELS

        def cost(name: str) -> float:
            return sum(MODELS[m][0].unrolled_cost for m in name.split("+"))

        sets = self.params.sets()
        return sorted(sets, key=lambda s: (-len(s.split("+")), -cost(s), s))

    def trial_config(self) -> dict[str, Any]:
        return {"augment": self.params.augment, "noise": self.params.noise.to_param()}

    def _validation(self, context: dict[str, Any]):
        from pipeline.methods.dlw.data import validation_set
        from pipeline.train.data import load_tiles

        p = self.params
        return validation_set(
            load_tiles(Path(context["data_dir"]), "val"),
            seed=int(context["seed"]),
            patches=p.val_patches,
            patch_size=p.patch_size,
            noise=p.noise,
        )

    def trainer(self, config: dict[str, Any], context: dict[str, Any]):
        from pipeline.methods.dlw.trainer import Trainer, TrialSpec
        from pipeline.train.data import load_tiles

        p = self.params
        # How the net is evaluated (layout, precision, checkpointing) is not a hyper-parameter:
        # it is read from the section, not from the trial's config.
        spec = TrialSpec.from_config(
            config,
            seed=int(context["seed"]),
            val_models=p.source_models,
            layout=p.layout,
            precision=p.precision,
            checkpoint_unrolled=p.checkpoint_unrolled,
        )
        tiles = list(load_tiles(Path(context["data_dir"]), "train").values())
        return Trainer(spec, tiles, self._validation(context), context["device"])

    def describe(self) -> str:
        p = self.params
        return (
            f"{super().describe()}; {p.epochs} epochs × {p.steps_per_epoch} steps, batch "
            f"{p.batch_size}, {p.patch_size}² patches, width {p.width}"
        )

    def progress(self, result: dict[str, Any]) -> str:
        line = (
            f"loss {result.get('train_loss', float('nan')):.5f}  val MPSNR "
            f"{result.get('val_mpsnr', float('nan')):.2f} dB  w ratio "
            f"{result.get('val_weight_ratio', float('nan')):.2f}"
        )
        if result.get("lr_retries"):
            line += (
                f"  (collapsed below the unweighted models on val: redone "
                f"{int(result['lr_retries'])}× with half the learning rate, now "
                f"{result.get('lr', float('nan')):.2g})"
            )
        return line

    def part_record(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "source_models": str(config["variant"]).split("+"),
            "net": {"name": "dlwnet", "width": int(config["width"]), "depth": int(config["depth"])},
        }

    def summary(self, outcomes: list, context: dict[str, Any]) -> dict[str, Any]:
        """The unweighted (w = 1) val MPSNR of every source model: what a map must beat."""
        import torch

        from pipeline.methods.dlw.bilevel import score
        from pipeline.models.registry import build_model

        val = self._validation(context)
        models = {m: build_model(m) for m in self.params.source_models}
        scores = score(models, torch.from_numpy(val.noisy), torch.from_numpy(val.clean))
        return {"unweighted": {f"val_mpsnr_{m}": round(v, 4) for m, v in scores.items()}}

    def summary_lines(self, metrics: dict[str, Any]) -> list[str]:
        """The validation MPSNR table: source set × source model, and the unweighted reference."""
        models = self.params.source_models
        head = f"{'source set':<14}" + "".join(f"{m:>9}" for m in models) + f"{'mean(own)':>11}"
        lines = ["validation MPSNR (dB) on the val patches under the training noise:", head]
        rows = [("unweighted", metrics.get("unweighted", {}), None)]
        rows += [(name, row, row[SCORE]) for name, row in metrics["variants"].items()]
        for name, row, own in rows:
            cells = "".join(f"{row.get(f'val_mpsnr_{m}', float('nan')):>9.2f}" for m in models)
            lines.append(f"{name:<14}{cells}" + ("" if own is None else f"{own:>11.2f}"))
        return lines

    def figure(self, state_dict: dict, context: dict[str, Any], path: Path, title: str) -> bool:
        import torch

        from pipeline.methods.dlw.figure import weight_map_png
        from pipeline.methods.dlw.net import DLWNet

        if not hasattr(self, "_val"):
            self._val = self._validation(context)
        val = self._val
        with torch.no_grad():
            w = DLWNet.from_state_dict(state_dict).eval()(torch.from_numpy(val.noisy[:1]))
        weight_map_png(path, val.noisy[0], w[0].numpy(), val.mask[0], f"DLW weights, {title}")
        return True

    @classmethod
    def report_sections(cls, results, lb, options) -> list:
        """Weight-map quality and the source-set comparison (:mod:`pipeline.methods.dlw.report`)."""
        from pipeline.methods.dlw.report import report_sections

        return report_sections(results, lb, options.reference)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu"):
        from pipeline.methods.dlw.net import load_dlwnet

        return load_dlwnet(path, device)

    @classmethod
    def weights(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        """``net(y[None])[0]`` under ``torch.no_grad()``, on the net's device, as float32."""
        import torch

        y = np.asarray(noisy, dtype=np.float64)
        device = next(part.parameters()).device
        with torch.no_grad():
            w = part(torch.from_numpy(y[None]).to(device=device, dtype=torch.float32))
        return np.asarray(w[0].detach().cpu().numpy(), dtype=np.float32)
