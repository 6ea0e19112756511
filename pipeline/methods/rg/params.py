r"""The ``train.rg`` section of params.yaml: regularising gradients for multi-task restoration
(Willingham, Sjöström, Guillemot, "Regularising gradients for multi-task image restoration",
VISAPP 2024; :mod:`pipeline.methods.rg`).

One network :math:`G_\phi` models the gradient of a regulariser inside gradient descent on the
fidelity, :math:`T(x) = x - \tau(A^\top W(Ax - y) + \lambda G_\phi(x))`, shared by every task
(denoising, ×2 super-resolution, inpainting, deblurring). The variants are four ways to train it
(``denoiser``, ``bound``, ``deqgd``, ``rerg``; :mod:`pipeline.methods.rg.trainer`). The bound and
the exact form of the four variants are this project's formulation: the paper's own text of them
was not available.

The defaults are CPU-sized (the four trials take ≈ 35 s on two cores, the ``train@rg`` log;
``profiles/paper.yaml`` holds a larger setting). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.methods.params import TrialParams
from pipeline.schema import require, require_choices

__all__ = ["SOLVERS", "TASKS", "VARIANTS", "RGParams"]

# The training variants, the longest trials first (rerg: a fixed point, its implicit backward and
# the bound's power iterations; deqgd: the first two; bound: the last; denoiser: one net pass).
VARIANTS = ("rerg", "deqgd", "bound", "denoiser")
# The training tasks, by operator kind (pipeline.degrade.operators.operator_kind).
TASKS = ("identity", "blur", "downsample", "inpaint")
# Fixed-point solvers of the test-time GD (torchdeq's): Anderson acceleration or plain iteration.
SOLVERS = ("anderson", "fixed_point_iter")


def gaussian_side(sigma: float) -> int:
    """Side of the Gaussian blur kernel of width ``sigma``: 2⌈3σ⌉ + 1 (the blur task's)."""
    import math

    return 2 * math.ceil(3 * sigma) + 1


@dataclass(frozen=True)
class RGParams(TrialParams):
    SEARCHABLE: ClassVar[tuple[str, ...]] = (
        "lr",
        "width",
        "depth",
        "tau",
        "beta",
        "batch_size",
        "patch_size",
        "epochs",
        "steps_per_epoch",
    )

    variants: list[str] = field(default_factory=lambda: ["denoiser", "bound", "deqgd", "rerg"])
    # G_φ: `depth` 3×3 convolutions of `width` channels, ReLU between them (net.GradNet).
    width: int = 16
    depth: int = 5
    # GD: T(x) = x − τ_b (Aᵀ W (A x − y) + s λ G_φ(x)), τ_b = tau / max(1, max w_b, s).
    tau: float = 1.0
    lam: float = 0.002  # λ at initialisation (learned as log λ; the denoiser variant keeps it)
    learn_lam: bool = True  # λ a learned scalar (bound, deqgd, rerg); False: fixed at `lam`
    beta: float = 1.0  # rerg: loss = deqgd + beta · bound
    lipschitz_cap: float = 0.95  # bound: L is clamped at the cap in 1/(1 − L) ...
    cap_penalty: float = 1.0  # ... and penalised above it: + cap_penalty · max(0, L − cap)²
    power_iters: int = 3  # power iterations of JᵀJ per training step (bound, rerg)
    # denoiser: G_φ(x̄ + s n) ≈ n / s with s ~ U[score_percent] % per sample.
    score_percent: list[float] = field(default_factory=lambda: [1.0, 20.0])
    # The fixed point in training (deqgd, rerg): Anderson forward, implicit backward (torchdeq).
    train_max_iter: int = 15
    train_tol: float = 1e-3  # relative change ‖T(x) − x‖ / ‖T(x)‖ per sample
    backward_max_iter: int = 15
    backward_tol: float = 1e-4
    anderson_m: int = 5  # Anderson memory
    # The test-time solve (validation and the restorer).
    solver: str = "anderson"
    max_iter: int = 30
    tol: float = 1e-3
    # Training data: single-band patches of the clean tiles, one task per patch (round robin
    # over `tasks`), Gaussian noise σ ~ U[noise_percent] % per patch on y's grid.
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    noise_percent: list[float] = field(default_factory=lambda: [1.0, 10.0])
    blur_sigma: list[float] = field(default_factory=lambda: [1.0, 2.0])  # U[..] px per batch
    factor: int = 2  # super-resolution factor (Gaussian anti-aliasing, circular)
    missing: float = 0.5  # inpainting: fraction of missing pixels (random mask per patch)
    patch_size: int = 24
    batch_size: int = 8
    augment: bool = True
    lr: float = 2e-3  # Adam
    epochs: int = 4
    steps_per_epoch: int = 40
    val_patches: int = 2  # fixed degraded patches per val tile and task

    def variant_names(self) -> list[str]:
        """The configured variants, the longest trials first."""
        return sorted(self.variants, key=VARIANTS.index)

    def check_method(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        require_choices(key("variants"), self.variants, VARIANTS)
        require_choices(key("tasks"), self.tasks, TASKS)
        require(self.solver in SOLVERS, key("solver"), self.solver, f"one of {list(SOLVERS)}")
        require(self.lam > 0, key("lam"), self.lam, "must be positive")
        ok = 0 < self.lipschitz_cap < 1
        require(ok, key("lipschitz_cap"), self.lipschitz_cap, "must lie in (0, 1)")
        require(self.cap_penalty >= 0, key("cap_penalty"), self.cap_penalty, "must be ≥ 0")
        for name in ("power_iters", "train_max_iter", "backward_max_iter", "max_iter"):
            require(getattr(self, name) >= 3, key(name), getattr(self, name), "must be ≥ 3")
        require(self.anderson_m >= 2, key("anderson_m"), self.anderson_m, "must be ≥ 2")
        for name in ("train_tol", "backward_tol", "tol"):
            v = getattr(self, name)
            require(0 < v < 1, key(name), v, "must lie in (0, 1)")
        for name in ("score_percent", "noise_percent"):
            r = getattr(self, name)
            ok = len(r) == 2 and 0 < r[0] <= r[1] <= 100
            require(ok, key(name), r, "must be [low, high] % with 0 < low ≤ high ≤ 100")
        b = self.blur_sigma
        ok = len(b) == 2 and 0 < b[0] <= b[1] <= 8
        require(ok, key("blur_sigma"), b, "must be [low, high] pixels with 0 < low ≤ high ≤ 8")
        require(self.factor in (2, 4), key("factor"), self.factor, "must be 2 or 4")
        ok = 0 < self.missing < 1
        require(ok, key("missing"), self.missing, "must lie in (0, 1)")
        require(self.val_patches >= 1, key("val_patches"), self.val_patches, "must be ≥ 1")
        # Every task in every batch; kernels fit a patch; the low-resolution grid is whole.
        side = gaussian_side(b[1]) if "blur" in self.tasks else 1
        for name, values in (
            ("batch_size", [self.batch_size, *self.search.get("batch_size", [])]),
            ("patch_size", [self.patch_size, *self.search.get("patch_size", [])]),
        ):
            for i, v in enumerate(values):
                where_v = key(name) if i == 0 else f"{key('search')}.{name}[{i - 1}]"
                if name == "batch_size":
                    n = len(self.tasks)
                    require(v >= n, where_v, v, f"must be ≥ the number of tasks ({n})")
                else:
                    require(v >= side, where_v, v, f"smaller than the blur kernel ({side} px)")
                    ok = v % self.factor == 0
                    require(ok, where_v, v, f"must be a multiple of factor ({self.factor})")

    def check_value(self, name: str, value: Any, where: str) -> None:
        if name == "lr":
            require(0 < value < 1, where, value, "the learning rate must lie in (0, 1)")
        elif name == "tau":
            require(0 < value <= 2, where, value, "the GD step must lie in (0, 2]")
        elif name == "beta":
            require(value >= 0, where, value, "must be ≥ 0")
        elif name == "depth":
            require(value >= 2, where, value, "must be ≥ 2 (a first and a last convolution)")
        else:
            super().check_value(name, value, where)
