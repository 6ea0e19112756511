"""The report's figures as PNG bytes: transfer heat map, MPSNR bars, AUC vs gain.
Rows and groups follow the label columns, never a method's name: a learned weighting is any
label ``<method>:<variant>`` whose ``weighting_method`` is not empty.

Matplotlib (Agg) with ``metadata={"Software": None}`` writes no timestamp or version into the PNG,
so identical tables give identical bytes (checked by the tests). Labels from the data pass
through :func:`mpl_text`, since a ``$`` would otherwise start matplotlib's math mode.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from pipeline.report.leaderboard import NO_WEIGHTING, REFERENCE

DPI = 90


def mpl_text(s) -> str:
    return str(s).replace("$", r"\$")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes (matplotlib's Agg canvas, encoded by Pillow), then closed."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def row_label(weighting: str, method: str) -> str:
    """A heat-map row: a learned weighting ``<method>:<variant>`` (e.g. ``dlw:nn+tv``) reads
    ``<method> <variant>``; a built-in weighting keeps its name (the oracle marked †)."""
    if method and weighting.startswith(f"{method}:"):
        return f"{method} {weighting[len(method) + 1 :]}"
    return f"{weighting} †" if weighting == "oracle" else weighting


def transfer_rows(lb: pd.DataFrame, reference: str = REFERENCE) -> list[tuple[str, str]]:
    """Rows of the transfer matrix as (weighting, its method): the learned weightings
    (non-empty ``weighting_method``) grouped by method, then the built-in weightings other than
    the reference (unweighted, handcrafted, oracle) for scale."""
    var = lb[(lb["weighting"] != NO_WEIGHTING) & (lb["weighting"] != reference)]
    method = var.groupby("weighting", sort=True)["weighting_method"].first()
    learned = sorted(((w, m) for w, m in method.items() if m), key=lambda wm: (wm[1], wm[0]))
    order = {"unweighted": 0, "handcrafted": 1, "oracle": 2}
    builtin = sorted((w for w, m in method.items() if not m), key=lambda w: (order.get(w, 3), w))
    return learned + [(w, "") for w in builtin]


def transfer_heatmap(
    lb: pd.DataFrame, cases: list[str], restorers: list[str], reference: str = REFERENCE
) -> bytes | None:
    """Rows = weighting, columns = restorer, colour = mean MPSNR gain over the reference (dB),
    one panel per case, every cell annotated; one symmetric colour scale for all panels."""
    rows = transfer_rows(lb, reference)
    var = lb[lb["weighting"] != NO_WEIGHTING]
    if not rows or not restorers:
        return None
    plt = _plt()
    grids = []
    for case in cases:
        c = var[var["case"] == case].set_index(["weighting", "restorer"])["mpsnr_gain"]
        grids.append(
            np.array(
                [[c.get((w, t), math.nan) for t in restorers] for w, _ in rows], dtype=np.float64
            )
        )
    finite = np.concatenate([g[np.isfinite(g)] for g in grids])
    lim = max(0.1, float(np.max(np.abs(finite)))) if finite.size else 1.0
    ncols = min(3, len(cases))
    nrows = math.ceil(len(cases) / ncols)
    w = 1.0 + 0.85 * len(restorers) + 1.6
    h = 1.2 + 0.42 * len(rows)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained"
    )
    n_learned = sum(1 for _, m in rows if m)
    im = None
    for ax, case, full in zip(axes.flat, cases, grids, strict=False):
        # A task's panel shows the restorers that take its operator only.
        keep = [j for j in range(len(restorers)) if np.isfinite(full[:, j]).any()] or list(
            range(len(restorers))
        )
        grid, shown = full[:, keep], [restorers[j] for j in keep]
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(shown)), [mpl_text(t) for t in shown], fontsize=8)
        ax.set_yticks(range(len(rows)), [mpl_text(row_label(r, m)) for r, m in rows], fontsize=8)
        ax.set_title(mpl_text(f"case {case}"), fontsize=9)
        if 0 < n_learned < len(rows):
            # Separates the learned weightings from the built-in ones below them.
            ax.axhline(n_learned - 0.5, color="black", linewidth=1.2)
        for i in range(len(rows)):
            for j in range(len(shown)):
                v = grid[i, j]
                text = "n/a" if not math.isfinite(v) else f"{v:+.2f}"
                colour = "white" if math.isfinite(v) and abs(v) > 0.6 * lim else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=colour)
    for ax in list(axes.flat)[len(cases) :]:
        ax.set_axis_off()
    if im is not None:
        cbar = fig.colorbar(im, ax=axes, shrink=0.9)
        cbar.set_label(mpl_text(f"MPSNR gain over {reference} (dB)"), fontsize=8)
    return png(fig)


def _colours(weightings: list[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    fixed = {"unweighted": "0.55", "handcrafted": "tab:olive", "oracle": "black"}
    fixed[NO_WEIGHTING] = "0.3"
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
    lb: pd.DataFrame, cases: list[str], restorers: list[str], plain: list[str]
) -> bytes | None:
    """Mean MPSNR per weighting (bars grouped by restorer; ``plain``, the restorers that take no
    weighting, last), one panel per case; error bars are the leaderboard's t-intervals over
    images. Bars start at the case's mean noisy MPSNR (dashed), so a bar's length is the gain
    over the noisy input."""
    if lb.empty:
        return None
    plt = _plt()
    order = ["unweighted", "handcrafted", "oracle"]
    weightings = [w for w in order if w in set(lb["weighting"])]
    weightings += sorted(set(lb["weighting"]) - set(order) - {NO_WEIGHTING})
    weightings += [NO_WEIGHTING] if NO_WEIGHTING in set(lb["weighting"]) else []
    colours = _colours(weightings)
    groups = list(restorers) + [r for r in plain if r not in restorers]
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
            cg = c[c["restorer"] == g]
            present = [w for w in weightings if w in set(cg["weighting"])]
            for k, w in enumerate(present):
                r = cg[cg["weighting"] == w].iloc[0]
                # Bars of one restorer share its 0.8-wide slot, whatever weightings it has.
                x = j - 0.4 + (k + 0.5) * 0.8 / len(present)
                bw = 0.9 * 0.8 / len(present)
                label = mpl_text(w) if w not in used else None
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
    return png(fig)


def auc_vs_gain(quality: pd.DataFrame, reference: str = REFERENCE) -> bytes | None:
    """Weight-map quality (mean AUC of −w for corrupted pixels) against restoration quality
    (MPSNR gain over the reference, averaged over restorers): one point per case × weighting."""
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
            label = mpl_text(r.weighting)
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
    ax.set_ylabel(mpl_text(f"MPSNR gain over {reference} (dB)"), fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, title="case", title_fontsize=7, frameon=True)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.97)
    return png(fig)
