"""The ``prepare`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.schema import require

# Distinct RGB photographs shipped inside scikit-image (no download at run time). `cat` is the
# same picture as `chelsea` and `motorcycle_right` the stereo twin of `motorcycle_left`, so
# neither is listed.
EMBEDDED_DEFAULT = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "retina",
    "rocket",
)


@dataclass(frozen=True)
class SplitParams:
    """Number of *images* per split (tiles of one image never straddle splits)."""

    train: int = 2
    val: int = 1
    test: int = 5

    def check(self, where: str) -> None:
        for name in ("train", "val", "test"):
            n = getattr(self, name)
            require(n >= 0, f"{where}.{name}", n, "must be ≥ 0")
        require(self.test >= 1, f"{where}.test", self.test, "the test split needs an image")


@dataclass(frozen=True)
class PrepareParams:
    source: Literal["embedded", "folder", "cave", "icvl"] = "embedded"
    # Root folder of a folder/cave/icvl source (relative to the repository or absolute).
    path: str | None = None
    # Image names to use: the embedded photographs, or a subset of a dataset's images
    # (null: every image found under `path`).
    images: list[str] | None = field(default_factory=lambda: list(EMBEDDED_DEFAULT))
    bands: int = 31
    # Axis order of .npy / TIFF-stack cubes of a folder source: "chw" or "hwc". null: told by
    # the band count (bands, or 3/4 for RGB); a file that fits both orders is refused.
    layout: Literal["chw", "hwc"] | None = None
    n_endmembers: int = 12
    temperature: float = 0.12
    # Synthetic tiles at or below this effective rank are redrawn
    # (docs/conventions.md: must exceed 3).
    min_effective_rank: int = 4
    scale: float = 0.25
    tile_size: int | None = 32
    tiles_per_image: int = 1
    min_mean: float = 0.05
    normalize: Literal["crop", "band", "none"] = "crop"
    quantize_bits: int = 16
    split: SplitParams = field(default_factory=SplitParams)

    def check(self, where: str) -> None:
        if self.source != "embedded":
            require(
                self.path is not None,
                f"{where}.path",
                self.path,
                f"source {self.source!r} needs the dataset's root folder",
            )
        require(self.bands >= 1, f"{where}.bands", self.bands, "must be ≥ 1")
        require(
            self.n_endmembers >= 6,
            f"{where}.n_endmembers",
            self.n_endmembers,
            "synthetic cubes mix at least 6 endmember spectra",
        )
        require(self.temperature > 0, f"{where}.temperature", self.temperature, "must be > 0")
        require(
            self.min_effective_rank >= 0,
            f"{where}.min_effective_rank",
            self.min_effective_rank,
            "must be ≥ 0",
        )
        require(0 < self.scale <= 1, f"{where}.scale", self.scale, "must lie in (0, 1]")
        if self.tile_size is not None:
            require(self.tile_size >= 8, f"{where}.tile_size", self.tile_size, "must be ≥ 8")
        require(
            self.tiles_per_image >= 1,
            f"{where}.tiles_per_image",
            self.tiles_per_image,
            "must be ≥ 1",
        )
        require(0 <= self.min_mean < 1, f"{where}.min_mean", self.min_mean, "must lie in [0, 1)")
        require(
            8 <= self.quantize_bits <= 24,
            f"{where}.quantize_bits",
            self.quantize_bits,
            "must lie in [8, 24]",
        )
        if self.images is not None:
            require(len(self.images) > 0, f"{where}.images", self.images, "must not be empty")
            dupes = sorted({n for n in self.images if self.images.count(n) > 1})
            require(not dupes, f"{where}.images", dupes, "names listed twice")
