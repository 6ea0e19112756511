"""``reports/figures/degradations.png``: one test image under every case."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io import png_bytes, write_bytes

DPI = 80


def false_colour(x: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W, 3) for display: bands at 80/50/20 % of the range as R/G/B
    (≈ 640/550/460 nm for 400–700 nm); grey and RGB images as they are. Clipped to [0, 1]."""
    c = x.shape[0]
    if c == 1:
        rgb = np.repeat(x, 3, axis=0)
    elif c == 3:
        rgb = x
    else:
        rgb = x[[round(f * (c - 1)) for f in (0.8, 0.5, 0.2)]]
    return np.clip(rgb.transpose(1, 2, 0), 0.0, 1.0)


def degradation_figure(examples: dict, image_id: str, synthetic: bool, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.degrade.suite import on_clean_grid, portable_mpsnr

    labels = list(examples)
    fig, axes = plt.subplots(len(labels), 5, figsize=(12.5, 2.6 * len(labels)), squeeze=False)
    for row, label in zip(axes, labels, strict=True):
        x, y, info = examples[label]
        mask, sigma = info["mask"], info["sigma"]
        # Show the band the case corrupts most (else the noisiest), where the damage is visible.
        b = (
            int(np.argmax(mask.mean(axis=(1, 2))))
            if mask.any()
            else int(np.argmax(sigma.mean(axis=(1, 2))))
        )
        row[0].imshow(false_colour(x))
        row[0].set_title("clean (false colour)" if x.shape[0] > 3 else "clean", fontsize=9)
        row[1].imshow(false_colour(y))
        db = portable_mpsnr(x, on_clean_grid(y, x.shape))
        row[1].set_title(f"{label}: degraded, {db:.2f} dB", fontsize=9)
        row[2].imshow(np.clip(y[b], 0, 1), cmap="gray", vmin=0, vmax=1)
        row[2].set_title(f"noisy band {b + 1}", fontsize=9)
        if np.ptp(sigma[b]) > 0:
            im = row[3].imshow(sigma[b] * 255.0, cmap="magma", vmin=0)
            row[3].set_title(f"true σ ×255, band {b + 1}", fontsize=9)
            fig.colorbar(im, ax=row[3], fraction=0.046, pad=0.04)
        else:
            # A σ constant over each band is clearer as one bar per band.
            per_band = sigma.mean(axis=(1, 2)) * 255.0
            hit = mask.any(axis=(1, 2))
            bands = np.arange(1, len(per_band) + 1)
            row[3].bar(bands, per_band, color=np.where(hit, "tab:red", "tab:blue"))
            row[3].set_title("true σ ×255 per band (red: corrupted)", fontsize=9)
            row[3].set_xlabel("band", fontsize=8)
            row[3].tick_params(labelsize=7)
        observed = info.get("operator", {}).get("observed")
        if observed is not None and not mask.any():
            # An inpainting task: what A removes says more than the (empty) corruption mask.
            row[4].imshow(~observed[b], cmap="gray_r", vmin=0, vmax=1)
            missing = (~observed[b]).mean()
            row[4].set_title(f"missing pixels (A), band {b + 1} ({missing:.1%})", fontsize=9)
        else:
            row[4].imshow(mask[b], cmap="gray_r", vmin=0, vmax=1)
            title = f"corrupted pixels, band {b + 1} ({mask[b].mean():.1%})"
            row[4].set_title(title, fontsize=9)
        for ax in (row[0], row[1], row[2], row[4]) if np.ptp(sigma[b]) == 0 else row:
            ax.set_xticks([])
            ax.set_yticks([])
    kind = "SYNTHETIC cube (from an RGB photograph)" if synthetic else "clean image"
    fig.suptitle(f"Test image {image_id!s}, {kind}, under every case", fontsize=11)
    # Room for the title above the first row's panel titles.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_size_inches()[1]))
    # Rendered by Agg at a fixed size and encoded by png_bytes (no time or version chunks, the
    # reference zlib): the file is a function of the pixels only, whatever the CPU.
    fig.set_dpi(DPI)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    write_bytes(path, png_bytes(rgba[..., :3], dpi=DPI))
