"""The rg report sections (pipeline.methods.rg.report) against hand computations on a small
tidy table: per-task means with t-intervals over images, the worst-task ranking and the paired
claim about rerg."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.methods.rg.report import report_sections

IMAGES = ("a", "b", "c", "d")
# task → its cases; mean MPSNR per (variant, task) below, plus an image effect and noise.
TASKS = {"denoise": ("stripe", "impulse"), "blur-g1.6": ("blur-g1.6/iid-7.65",),
         "inpaint-50": ("inpaint-50/iid-10",)}  # fmt: skip
MEANS = {
    "denoiser": {"denoise": 30.0, "blur-g1.6": 22.0, "inpaint-50": 15.0},  # fails on inpainting
    "bound": {"denoise": 28.0, "blur-g1.6": 23.0, "inpaint-50": 24.0},
    "deqgd": {"denoise": 31.0, "blur-g1.6": 18.0, "inpaint-50": 25.0},  # fails on blur
    "rerg": {"denoise": 30.0, "blur-g1.6": 23.5, "inpaint-50": 24.5},
    "tv": {"denoise": 29.0, "blur-g1.6": 23.0, "inpaint-50": 24.0},
}


def results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for row, means in MEANS.items():
        for task, cases in TASKS.items():
            for case in cases:
                for i, image in enumerate(IMAGES):
                    for weighting in ("unweighted", "oracle"):
                        rows.append({
                            "split": "test", "task": task, "case": case, "image_id": image,
                            "weighting": weighting,
                            "restorer": row if row == "tv" else f"rg:{row}",
                            "restorer_method": "" if row == "tv" else "rg",
                            "restorer_variant": "" if row == "tv" else row,
                            "mpsnr": means[task] + 0.3 * i + rng.normal(0, 0.2)
                            + (5.0 if weighting == "oracle" else 0.0),
                            "iterations": 10.0 + i, "time_s": 0.1,
                        })  # fmt: skip
    return pd.DataFrame(rows)


OPTIONS = SimpleNamespace(reference="unweighted", confidence=0.95, reference_restorer="tv")


def test_tables_match_hand_computations():
    r = results()
    sections = {s.name: s for s in report_sections(r, None, OPTIONS)}
    assert list(sections) == ["rg-tasks", "rg-worst", "rg-claim"]
    tasks = sections["rg-tasks"].table
    u = r[r.weighting == "unweighted"]
    for _, row in tasks.iterrows():
        label = row.row if row.row == "tv" else f"rg:{row.row}"
        g = u[(u.restorer == label) & (u.task == row.task)]
        per = g.groupby("image_id").mpsnr.mean().to_numpy()  # cases averaged per image
        half = stats.t.ppf(0.975, len(per) - 1) * per.std(ddof=1) / np.sqrt(len(per))
        assert row.mpsnr_mean == pytest.approx(per.mean(), abs=1e-9)
        assert (row.ci_low, row.ci_high) == pytest.approx((per.mean() - half, per.mean() + half))
        assert row.n == 4 and row.iterations == pytest.approx(11.5)
    worst = sections["rg-worst"].table.set_index("row")
    assert worst.loc["denoiser", "worst_task"] == "inpaint-50"
    assert worst.loc["deqgd", "worst_task"] == "blur-g1.6"
    assert worst.loc["rerg", "worst_task"] == "blur-g1.6"
    assert worst.loc["rerg", "rank"] == 1  # 23.5 + image effect: the best worst task
    assert list(worst.sort_values("rank").index[:2]) == ["rerg", "bound"]
    claim = sections["rg-claim"].table
    wt = claim[(claim.scope == "worst task vs worst task") & (claim.comparison == "rerg − deqgd")]
    a = u[(u.restorer == "rg:rerg") & (u.task == "blur-g1.6")].groupby("image_id").mpsnr.mean()
    b = u[(u.restorer == "rg:deqgd") & (u.task == "blur-g1.6")].groupby("image_id").mpsnr.mean()
    d = (a - b).to_numpy()
    assert wt.mean_diff.iloc[0] == pytest.approx(d.mean(), abs=1e-9)
    assert bool(wt.significant.iloc[0])
    text = sections["rg-worst"].text
    assert "Best worst-task MPSNR: rerg" in text
    assert "rerg is significantly the worst variant on no task" in text


def test_rerg_worst_somewhere_is_said():
    r = results()
    r.loc[(r.restorer == "rg:rerg") & (r.task == "denoise"), "mpsnr"] -= 10.0
    text = next(s.text for s in report_sections(r, None, OPTIONS) if s.name == "rg-worst")
    assert "rerg is significantly the worst variant on: denoise" in text
    assert "rerg's worst task is significantly below" in text


def test_no_rg_rows_no_sections():
    r = results()
    assert report_sections(r[r.restorer == "tv"], None, OPTIONS) == []
