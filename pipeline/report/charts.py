"""The report's figures as inline PNG (base64): transfer heat map, MPSNR bars, AUC vs gain.

Matplotlib (Agg) with ``metadata={"Software": None}`` writes no timestamp or version into the PNG,
so identical tables give identical bytes (checked by the tests). Labels from the data pass
through :func:`mpl_text`, since a ``$`` would otherwise start matplotlib's math mode.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pandas as pd

DPI = 90


def mpl_text(s) -> str:
    return str(s).replace("$", r"\$")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def weighting_label(weighting: str) -> str:
    return weighting.split(":", 1)[1] if weighting.startswith("dlw:") else weighting


def row_label(weighting: str) -> str:
    if weighting.startswith("dlw:"):
        return f"DLW {weighting_label(weighting)}"
    return f"{weighting} †" if weighting == "oracle" else weighting


def transfer_rows(lb: pd.DataFrame) -> list[str]:
    """Rows of the transfer matrix: DLW source sets, then the handcrafted and oracle references."""
    var = lb[lb["method"] == "dlw"]
    dlw = sorted(set(var.loc[var["weighting_kind"] == "dlw", "weighting"]))
    refs = [w for w in ("handcrafted", "oracle") if w in set(var["weighting"])]
    return dlw + refs


def transfer_heatmap(lb: pd.DataFrame, cases: list[str], targets: list[str]) -> str | None:
    """Rows = source set, columns = target, colour = mean MPSNR gain over unweighted (dB),
    one panel per case, every cell annotated; one symmetric colour scale for all panels."""
    rows = transfer_rows(lb)
    var = lb[lb["method"] == "dlw"]
    if not rows or not targets:
        return None
    plt = _plt()
    grids = []
    for case in cases:
        c = var[var["case"] == case].set_index(["weighting", "target"])["mpsnr_gain"]
        grids.append(
            np.array([[c.get((w, t), math.nan) for t in targets] for w in rows], dtype=np.float64)
        )
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    lim = max(0.1, float(np.max(np.abs(finite)))) if finite.size else 1.0
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    w = 1.0 + 0.85 * len(targets) + 1.6
    h = 1.2 + 0.42 * len(rows)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained"
    )
    im = None
    for ax, case, grid in zip(axes.flat, cases, grids, strict=False):
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(targets)), [mpl_text(t) for t in targets], fontsize=8)
        ax.set_yticks(range(len(rows)), [mpl_text(row_label(r)) for r in rows], fontsize=8)
        ax.set_title(mpl_text(f"case {case}"), fontsize=9)
        n_dlw = sum(1 for r in rows if r.startswith("dlw:"))
        if 0 < n_dlw < len(rows):
            # Separates the learned source sets from the reference weightings below them.
            ax.axhline(n_dlw - 0.5, color="black", linewidth=1.2)
        for i in range(len(rows)):
            for j in range(len(targets)):
                v = grid[i, j]
                text = "n/a" if not math.isfinite(v) else f"{v:+.2f}"
                colour = "white" if math.isfinite(v) and abs(v) > 0.6 * lim else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=colour)
    for ax in list(axes.flat)[len(cases) :]:
        ax.set_axis_off()
    if im is not None:
        cbar = fig.colorbar(im, ax=axes, shrink=0.9)
        cbar.set_label("MPSNR gain over unweighted (dB)", fontsize=8)
    return png_base64(fig)


def _colours(weightings: list[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    fixed = {"unweighted": "0.55", "handcrafted": "tab:olive", "oracle": "black", "none": "0.3"}
    out: dict[str, tuple] = {}
    k = 0
    for w in weightings:
        if w in fixed:
            out[w] = fixed[w]
        else:
            out[w] = cmap(k % 20)
            k += 1
    return out


def mpsnr_bars(
    lb: pd.DataFrame, cases: list[str], targets: list[str], baselines: list[str]
) -> str | None:
    """Mean MPSNR per weighting (bars grouped by target, baselines last), one panel per case;
    error bars are the 95 % t-intervals over images. Bars start at the case's mean noisy MPSNR
    (dashed), so a bar's length is the gain over the noisy input."""
    if lb.empty:
        return None
    plt = _plt()
    order = ["unweighted", "handcrafted", "oracle"]
    weightings = [w for w in order if w in set(lb["weighting"])]
    weightings += sorted(set(lb["weighting"]) - set(order) - {"none"})
    weightings += ["none"] if "none" in set(lb["weighting"]) else []
    colours = _colours(weightings)
    groups = list(targets) + list(baselines)
    fig, axes = plt.subplots(
        len(cases), 1, figsize=(max(8.0, 1.1 * len(groups) + 3.5), 3.0 * len(cases)), squeeze=False
    )
    for ax, case in zip(axes[:, 0], cases, strict=True):
        c = lb[lb["case"] == case]
        floor = float(np.nanmean(c["noisy_mpsnr_mean"])) if len(c) else 0.0
        if not math.isfinite(floor):
            floor = 0.0
        used = []
        for j, g in enumerate(groups):
            cg = c[c["target"] == g]
            present = [w for w in weightings if w in set(cg["weighting"])]
            for k, w in enumerate(present):
                r = cg[cg["weighting"] == w].iloc[0]
                # Bars of one target share its 0.8-wide slot, whatever weightings it has.
                x = j - 0.4 + (k + 0.5) * 0.8 / len(present)
                bw = 0.9 * 0.8 / len(present)
                label = mpl_text(weighting_label(w)) if w not in used else None
                used.append(w)
                ax.bar(x, r.mpsnr_mean - floor, bw, bottom=floor, color=colours[w], label=label)
                if math.isfinite(r.mpsnr_ci_low):
                    err = [[r.mpsnr_mean - r.mpsnr_ci_low], [r.mpsnr_ci_high - r.mpsnr_mean]]
                    ax.errorbar(x, r.mpsnr_mean, yerr=err, color="black", capsize=2, lw=0.8)
        ax.axhline(floor, color="0.3", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(groups)), [mpl_text(g) for g in groups], fontsize=8)
        ax.set_ylabel("MPSNR (dB)", fontsize=8)
        ax.set_title(mpl_text(f"case {case} (dashed: noisy input)"), fontsize=9)
        ax.tick_params(labelsize=8)
    handles, labels = [], []
    for ax in axes[:, 0]:
        for hnd, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncols=1, frameon=False)
    # Fixed margins in inches (tight_layout would measure every label: slow and unneeded).
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - 1.4 / width,
        bottom=0.45 / height,
        top=1 - 0.35 / height,
        hspace=0.45,
    )
    return png_base64(fig)


def auc_vs_gain(quality: pd.DataFrame) -> str | None:
    """Weight-map quality (mean AUC of −w for corrupted pixels) against restoration quality
    (MPSNR gain over unweighted, averaged over targets): one point per case × weighting."""
    q = quality.dropna(subset=["weight_auc", "mpsnr_gain"])
    if q.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cases = list(dict.fromkeys(q["case"]))
    markers = "osD^vP*X<>"
    for i, case in enumerate(cases):
        cq = q[q["case"] == case]
        ax.scatter(
            cq["weight_auc"],
            cq["mpsnr_gain"],
            marker=markers[i % len(markers)],
            label=mpl_text(case),
            s=28,
        )
        for r in cq.itertuples():
            label = mpl_text(weighting_label(r.weighting))
            ax.annotate(
                label,
                (r.weight_auc, r.mpsnr_gain),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.axvline(0.5, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel("weight-map AUC for corrupted pixels (0.5 = chance)", fontsize=8)
    ax.set_ylabel("MPSNR gain over unweighted (dB)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, title="case", title_fontsize=7, frameon=True)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.97)
    return png_base64(fig)
