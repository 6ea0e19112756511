"""The ALR report sections (pipeline.methods.alr.report) against hand computations: the
training σ × test σ matrix, ALR vs the better of BM3D/BM4D per σ, and the claim sentence."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.methods.alr.report import report_sections

IMAGES = ("a", "b", "c", "d", "e")
SIGMAS = {"iid-12.75": 12.75, "iid-51": 51.0, "iid-102": 102.0}
# row → MPSNR per test σ (the varying critic holds up at σ = 0.4)
MEANS = {
    "varying": (32.0, 24.0, 21.0),
    "s0.05": (33.0, 23.5, 18.0),
    "s0.4": (30.0, 23.0, 20.0),
    "bm4d": (34.0, 25.0, 20.5),
    "tv": (31.0, 23.0, 19.0),
}


def results(**shift) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for row, means in MEANS.items():
        for (case, s255), m in zip(SIGMAS.items(), means, strict=True):
            for i, image in enumerate(IMAGES):
                learned = row not in ("bm4d", "tv")
                rows.append({
                    "split": "test", "task": "denoise", "noise_model": "iid", "case": case,
                    "case_params": json.dumps({"sigma_255": s255}), "image_id": image,
                    "weighting": "none" if row == "bm4d" else "unweighted",
                    "restorer": f"alr:{row}" if learned else row,
                    "restorer_method": "alr" if learned else "",
                    "restorer_variant": row if learned else "",
                    "mpsnr": m + 0.5 * i + rng.normal(0, 0.1) + shift.get(row, 0.0),
                })  # fmt: skip
    # A heterogeneous case the critics were also solved on: not part of the σ study.
    rows.append({**rows[0], "case": "stripe", "noise_model": "stripe",
                 "case_params": json.dumps({"sigma_255": [10, 30]})})  # fmt: skip
    return pd.DataFrame(rows)


OPTIONS = SimpleNamespace(reference="unweighted", confidence=0.95, reference_restorer="tv")


def test_matrix_and_comparisons_match_hand_computations():
    r = results()
    sections = {s.name: s for s in report_sections(r, None, OPTIONS)}
    assert list(sections) == ["alr-matrix", "alr-vs-bm", "alr-claim"]
    matrix = sections["alr-matrix"].table
    assert set(matrix.row) == set(MEANS) and len(matrix) == len(MEANS) * len(SIGMAS)
    assert sorted(set(matrix.sigma_test)) == pytest.approx([0.05, 0.2, 0.4])
    cell = matrix[(matrix.row == "s0.05") & np.isclose(matrix.sigma_test, 0.2)].iloc[0]
    v = r[(r.restorer == "alr:s0.05") & (r.case == "iid-51")].mpsnr.to_numpy()
    half = stats.t.ppf(0.975, 4) * v.std(ddof=1) / np.sqrt(5)
    assert cell.mpsnr_mean == pytest.approx(v.mean(), abs=1e-9) and cell.n == 5
    assert (cell.ci_low, cell.ci_high) == pytest.approx((v.mean() - half, v.mean() + half))
    vs = sections["alr-vs-bm"].table
    row = vs[(vs.comparison == "varying − bm4d") & np.isclose(vs.sigma_test, 0.4)].iloc[0]
    d = (r[(r.restorer == "alr:varying") & (r.case == "iid-102")].mpsnr.to_numpy()
         - r[(r.restorer == "bm4d") & (r.case == "iid-102")].mpsnr.to_numpy())  # fmt: skip
    assert row.mean_diff == pytest.approx(d.mean(), abs=1e-9) and bool(row.significant)
    claim = sections["alr-claim"].table
    assert set(claim.comparison) == {"varying − s0.05", "varying − s0.4"}
    assert np.isclose(claim.sigma_test, 0.4).all() and claim.significant.all()
    assert "significantly better than every single-σ one" in sections["alr-claim"].text


def test_claim_sentence_says_tied_and_worse():
    tied = results(varying=-1.0)  # 20.0 at σ = 0.4: tied with s0.4, above s0.05
    text = next(s.text for s in report_sections(tied, None, OPTIONS) if s.name == "alr-claim")
    assert "tied with s0.4" in text and "not shown here" in text
    worse = results(varying=-2.5)
    text = next(s.text for s in report_sections(worse, None, OPTIONS) if s.name == "alr-claim")
    assert "significantly worse than s0.4" in text and "does not hold here" in text


def test_no_iid_rows_no_sections():
    r = results()
    assert report_sections(r[r.noise_model != "iid"], None, OPTIONS) == []
