"""The picture of a predicted weight map logged with every trial: one noisy band of a validation
patch (the band with the most corrupted pixels), the weights DLWnet gives it, and the corrupted
pixels only an oracle knows. Good weights are dark where the mask is bright."""

from __future__ import annotations

import io
import os

import numpy as np

from pipeline.io import write_bytes

__all__ = ["weight_map_png"]


def weight_map_png(
    path: str | os.PathLike, noisy: np.ndarray, w: np.ndarray, mask: np.ndarray, title: str
) -> None:
    """Write a PNG for one sample: ``noisy``, ``w``, ``mask`` are ``(C, H, W)`` arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    band = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(1)))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), constrained_layout=True)
    panels = [
        (noisy[band], f"noisy, band {band}", "gray", None),
        (w[band], "weight w (log scale)", "viridis", "log"),
        (mask[band].astype(float), "corrupted pixels (oracle)", "gray", None),
    ]
    for ax, (img, label, cmap, scale) in zip(axes, panels, strict=True):
        if scale == "log":
            im = ax.imshow(
                img, cmap=cmap, norm=matplotlib.colors.LogNorm(vmin=max(img.min(), 1e-4))
            )
            fig.colorbar(im, ax=ax, shrink=0.8)
        else:
            ax.imshow(img, cmap=cmap)
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
