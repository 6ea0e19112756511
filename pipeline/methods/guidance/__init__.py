r"""Proxy-based hyper-guidance for non-blind deconvolution (Gao, Liu, Liu, Fan, "Proxy-based
hyper-guidance…", The Visual Computer 2023).

A proxy (hyper-)network :math:`H_\theta` estimates the noise-level map :math:`\hat\sigma` of a
blurred, noisy image; a reconstruction network :math:`A_\omega` — K unrolled half-quadratic
splitting stages, an exact FFT deconvolution then a learned residual denoiser guided by
:math:`\hat\sigma` — restores it. They are trained bilevel-style on
:math:`g = \operatorname{mean}(\hat\sigma - \sigma)^2` and the reconstruction MSE :math:`f`
(:mod:`.trainer`). Bands are folded into the batch: every band of a cube is a grey image with
its own :math:`\hat\sigma` map, so the method takes any number of bands.

Contributions to the matrix:

* a **weighting** ``guidance:<variant>``: :math:`w \propto 1/\max(\hat\sigma, \varepsilon)^2` per
  pixel and band, normalised to mean 1 over the cube (the inverse-variance weights of the
  estimated noise; none for variant ``none``, which has no proxy);
* a **restorer** ``guidance:<variant>`` of role ``learned`` for blur tasks only
  (``restorer_operators``): :math:`A_\omega` with its own :math:`\hat\sigma` (scaled by the
  strength), given the task's blur operator.

=============  ====================================================================================
module         purpose
=============  ====================================================================================
``params``     the ``train.guidance`` section (no torch)
``net``        ProxyNet, Denoiser, HQSNet, ``fft_deconv``, the checkpoint loader
``data``       random kernels, σ maps, training batches and the fixed validation set
``trainer``    a trial: alternating / naive / no guidance, best epoch on val
=============  ====================================================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.methods.base import SCORE, Method
from pipeline.methods.guidance.params import GuidanceParams, split_variant

__all__ = ["Guidance"]

# Bands through the nets at once: bounds the activations of a large cube (width × H × W each).
CHUNK = 8


def _fold(cube: np.ndarray, where: str) -> np.ndarray:
    """A finite (C, H, W) cube as float32 (C, 1, H, W): bands into the batch."""
    y = np.asarray(cube, dtype=np.float32)
    if y.ndim != 3:
        raise ValueError(f"{where}: expected a (C, H, W) cube, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: the image has NaN or infinite values")
    return y[:, None]


class Guidance(Method):
    name: ClassVar[str] = "guidance"
    params_cls = GuidanceParams
    # The training blur (motion kernels, exact Gaussians and their 1-D weights, Blur) and the
    # seeded streams.
    code: ClassVar[tuple[str, ...]] = ("degrade", "data/dataset.py", "seeding.py")
    provides_weighting: ClassVar[bool] = True
    restorer_role: ClassVar[str | None] = "learned"
    restorer_tuned: ClassVar[bool] = False
    # The forward operators its restorer takes (a deconvolution): blur tasks only.
    restorer_operators: ClassVar[tuple[str, ...]] = ("blur",)
    operators: ClassVar[tuple[str, ...]] = restorer_operators  # the name evaluate reads
    # The oracle-guided row: A_ω told the true σ map instead of σ̂ (the paper's upper bound).
    restorer_oracle: ClassVar[bool] = True
    gives_noise_map: ClassVar[bool] = True  # σ̂ = H_θ(y), beside the true σ in the gallery
    params: GuidanceParams

    # --- training -------------------------------------------------------------------------

    def variants(self) -> list[str]:
        return self.params.variants()

    @classmethod
    def provides_weighting_for(cls, variant: str) -> bool:
        """Whether a variant gives a weight map (``none`` has no proxy, so no σ̂): evaluate's
        ``guidance`` weighting expands to the other variants only."""
        return split_variant(variant)[0] != "none"

    def trial_config(self) -> dict[str, Any]:
        p = self.params
        return {
            "augment": p.augment,
            "sigma_max": p.sigma_max,
            "sigma_min": p.sigma_min,
            "rho_noise": p.rho_noise,
            "blur_sigma": list(p.blur_sigma),
            "motion_size": p.motion_size,
            "motion_fraction": p.motion_fraction,
            "noise_percent": list(p.noise_percent),
            "noise_maps": list(p.noise_maps),
            "sigma_floor": p.sigma_floor,
        }

    def _validation(self, context: dict[str, Any]):
        from pipeline.methods.guidance.data import Degradation, validation_set
        from pipeline.train.data import load_tiles

        p = self.params
        deg = Degradation(
            tuple(p.blur_sigma),
            p.motion_size,
            p.motion_fraction,
            tuple(p.noise_percent),
            tuple(p.noise_maps),
        )
        return validation_set(
            load_tiles(Path(context["data_dir"]), "val"),
            seed=int(context["seed"]),
            patches=p.val_patches,
            patch_size=p.patch_size,
            deg=deg,
        )

    def trainer(self, config: dict[str, Any], context: dict[str, Any]):
        from pipeline.methods.guidance.trainer import Trainer, TrialSpec
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
            f"{p.batch_size}, {p.patch_size}² patches, width {p.width}, K = {p.stages}"
        )

    def progress(self, result: dict[str, Any]) -> str:
        nan = float("nan")
        line = (
            f"f {result.get('train_f', nan):.2e}  g {result.get('train_g', nan):.2e}  val PSNR "
            f"{result.get(SCORE, nan):.2f} dB (y {result.get('val_psnr_y', nan):.2f})"
        )
        corr = result.get("val_sigma_corr", nan)
        if not math.isnan(corr):
            line += f"  σ̂ RMSE {result.get('val_sigma_rmse', nan):.4f}, corr {corr:.3f} with σ"
        return line

    def part_record(self, config: dict[str, Any]) -> dict[str, Any]:
        guidance, denoiser = split_variant(config["variant"])
        return {
            "guidance": guidance,
            "net": {
                "name": "proxy+hqs" if guidance != "none" else "hqs",
                "denoiser": denoiser,
                "width": int(config["width"]),
                "stages": int(config["stages"]),
                "sigma_max": float(config["sigma_max"]),
                "sigma_min": float(config["sigma_min"]),
                "rho_noise": float(config["rho_noise"]),
            },
            "weighting": guidance != "none",
            "restorer_operators": list(self.restorer_operators),
        }

    # --- contributions to the matrix ------------------------------------------------------

    @classmethod
    def report_sections(cls, results, lb, options) -> list:
        """Variants side by side: restorers on the blur cases, the paper's paired comparisons
        and σ̂ maps as weightings (:mod:`pipeline.methods.guidance.report`)."""
        from pipeline.methods.guidance.report import report_sections

        return report_sections(results, lb, options.reference, options.confidence)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu"):
        from pipeline.methods.guidance.net import load_guidance

        return load_guidance(path, device)

    @classmethod
    def sigma(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        """σ̂ = H_θ(y) of every band of ``noisy`` (C, H, W), float32 (C, H, W), ≥ 0."""
        import torch

        if not part.guided:
            raise ValueError(
                "guidance: this part (variant none) has no proxy network, so no σ̂ and no weighting"
            )
        y = _fold(noisy, "guidance.sigma")
        device = next(part.parameters()).device
        with torch.no_grad():
            out = [
                part.sigma(torch.from_numpy(y[i : i + CHUNK]).to(device)).cpu().numpy()
                for i in range(0, len(y), CHUNK)
            ]
        return np.concatenate(out)[:, 0].astype(np.float32)

    @classmethod
    def noise_map(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        return cls.sigma(part, noisy)

    @classmethod
    def weights(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        r""":math:`w = \max(\hat\sigma, \varepsilon)^{-2}`, normalised to mean 1 over the cube
        (ε = the part's ``sigma_floor``): float32, finite, > 0, the shape of ``noisy``."""
        sigma = np.maximum(cls.sigma(part, noisy).astype(np.float64), float(part.sigma_floor))
        w = sigma**-2.0
        return (w / w.mean()).astype(np.float32)

    @classmethod
    def restore(
        cls, part: Any, noisy: np.ndarray, w: np.ndarray | None, strength: float, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``A_ω`` of ``noisy`` (C, H, W) blurred by the task's operator ``A`` (a
        :class:`~pipeline.degrade.operators.Blur`), guided by ``strength · σ̂``; ``w`` is
        ignored (role learned). Deconvolves with the circular model: for a zero-boundary blur
        that is the circulant approximation."""
        from pipeline.degrade.operators import Blur

        if A is None:
            raise ValueError(
                "guidance restorer: a deconvolution needs the task's blur operator A "
                "(restore(part, y, w, strength, A=Blur)); got none — it takes blur tasks only"
            )
        if not isinstance(A, Blur):
            raise ValueError(
                "guidance restorer: takes blur tasks only, got an operator of type "
                f"{type(A).__name__}"
            )
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f"guidance restorer: strength = {strength!r} must be finite, ≥ 0")
        sigma = cls.sigma(part, noisy) * np.float32(strength) if part.guided else None
        return cls._run(part, noisy, A.kernel, sigma)

    @classmethod
    def restore_oracle(
        cls, part: Any, noisy: np.ndarray, sigma: np.ndarray, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``A_ω`` of ``noisy`` guided by the case's true σ map (the oracle-guided row)."""
        from pipeline.degrade.operators import Blur

        if not isinstance(A, Blur):
            raise ValueError("guidance restorer: takes blur tasks only (A must be a Blur)")
        return cls.restore_with_sigma(part, noisy, A, sigma)

    @classmethod
    def restore_with_sigma(
        cls, part: Any, y: np.ndarray, kernel: Any, sigma_map: Any
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``A_ω`` of ``y`` (C, H, W) blurred by ``kernel`` ((kh, kw) array or tensor, or a
        :class:`~pipeline.degrade.operators.Blur`), guided by a given σ map instead of σ̂: a
        number, a per-band (C,) array or a (C, H, W) map (e.g. the true σ: the oracle-guided
        row; a constant: the "told σ" baseline). Needs a guided part."""
        from pipeline.degrade.operators import Blur

        if not part.guided:
            raise ValueError("guidance: variant none takes no σ map (its denoisers see z alone)")
        if isinstance(kernel, Blur):
            kernel = kernel.kernel
        y = np.asarray(y, dtype=np.float32)
        s = np.asarray(sigma_map, dtype=np.float32)
        if s.ndim == 1:
            s = s[:, None, None]
        try:
            s = np.array(np.broadcast_to(s, y.shape))  # a writable copy
        except ValueError:
            raise ValueError(
                f"guidance: sigma_map of shape {s.shape} does not fit the image {y.shape}"
            ) from None
        if not np.isfinite(s).all() or (s < 0).any():
            raise ValueError("guidance: sigma_map must be finite and ≥ 0")
        return cls._run(part, y, kernel, s)

    @classmethod
    def _run(cls, part, noisy, kernel, sigma) -> tuple[np.ndarray, dict[str, Any]]:
        import torch

        y = _fold(noisy, "guidance restorer")
        device = next(part.parameters()).device
        k = torch.as_tensor(kernel).detach().to(device, torch.float32)
        out = []
        with torch.no_grad():
            for i in range(0, len(y), CHUNK):
                yc = torch.from_numpy(y[i : i + CHUNK]).to(device)
                sc = None if sigma is None else torch.from_numpy(sigma[i : i + CHUNK, None])
                out.append(part(yc, k, None if sc is None else sc.to(device)).cpu().numpy())
        x = np.concatenate(out)[:, 0].astype(np.float32)
        return x, {"iterations": part.hqs.stages, "converged": True}
