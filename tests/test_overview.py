"""The report overview (pipeline/report/overview.py): gains per (part, case) against hand
computations, Holm over the whole overview, ranks with ties, the headline sentences and the
diverging colour scale. All data here is FAKE (tests/fixtures_report.py)."""

import math

import numpy as np
import pandas as pd
import pytest
from fixtures_report import fake_row
from scipy import stats

from pipeline.report.overview import (
    OVERVIEW_COLUMNS,
    RANK_AGGREGATION,
    RANKING_COLUMNS,
    diverging_colour,
    headline,
    overview,
    overview_matrix,
    ranking,
)

IMAGES = ("a", "b", "c")
# FAKE MPSNR: (case, restorer, weighting) → per image the values of its seeds. dlw:x has two
# training seeds with different values (the image mean is what enters every difference); bm4d is
# a peer that takes no weighting (weighting "none").
HAND = {
    ("c1", "tv", "unweighted"): {"a": [20.0], "b": [22.0], "c": [24.0]},
    ("c1", "nn", "unweighted"): {"a": [21.0], "b": [23.5], "c": [25.0]},
    ("c1", "tv", "handcrafted"): {"a": [21.0], "b": [22.5], "c": [25.0]},
    ("c1", "nn", "handcrafted"): {"a": [22.0], "b": [24.0], "c": [26.0]},
    ("c1", "tv", "dlw:x"): {"a": [22.0, 24.0], "b": [23.0, 23.0], "c": [27.0, 29.0]},
    ("c1", "nn", "dlw:x"): {"a": [23.0, 23.0], "b": [25.0, 27.0], "c": [26.0, 26.0]},
    ("c1", "bm4d", "none"): {"a": [22.0], "b": [23.0], "c": [27.0]},
    ("c2", "tv", "unweighted"): {"a": [30.0], "b": [31.0], "c": [29.0]},
    ("c2", "nn", "unweighted"): {"a": [30.5], "b": [31.0], "c": [30.0]},
    ("c2", "tv", "handcrafted"): {"a": [29.0], "b": [31.5], "c": [29.0]},
    ("c2", "nn", "handcrafted"): {"a": [30.0], "b": [31.0], "c": [31.0]},
    ("c2", "tv", "dlw:x"): {"a": [31.0, 33.0], "b": [32.0, 32.5], "c": [30.0, 31.0]},
    ("c2", "nn", "dlw:x"): {"a": [31.0, 32.0], "b": [33.0, 33.0], "c": [31.5, 32.5]},
    ("c2", "bm4d", "none"): {"a": [31.0], "b": [30.0], "c": [31.5]},
}


def table(values: dict) -> pd.DataFrame:
    rows = []
    for (case, restorer, weighting), per_image in values.items():
        role = "peer" if weighting == "none" else "target"
        for image, seeds in per_image.items():
            for k, v in enumerate(seeds):
                seed = k if len(seeds) > 1 else -1
                rows.append(fake_row(case, restorer, weighting, seed, image, v, role=role))
    return pd.DataFrame(rows)


def x(case, restorer, weighting, image, values=HAND) -> float:
    """The seed-averaged MPSNR of one image."""
    return float(np.mean(values[(case, restorer, weighting)][image]))


def weighting_diffs(case, w, ref="unweighted", restorers=("tv", "nn")) -> np.ndarray:
    """Per image: the mean over the restorers of x(w) − x(ref)."""
    return np.array(
        [np.mean([x(case, r, w, i) - x(case, r, ref, i) for r in restorers]) for i in IMAGES]
    )


def hand_holm(p: dict) -> dict:
    """Holm written out: sort, scale by (m − j + 1), running maximum, clip at 1."""
    order = sorted(p, key=p.get)
    m = len(order)
    out, running = {}, 0.0
    for j, key in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[key]))
        out[key] = running
    return out


@pytest.fixture(scope="module")
def ov():
    return overview(table(HAND))


def cell(ov, kind, part, case):
    row = ov[(ov["part_kind"] == kind) & (ov["part"] == part) & (ov["case"] == case)]
    assert len(row) == 1
    return row.iloc[0]


def test_columns_and_order(ov):
    assert list(ov.columns) == list(OVERVIEW_COLUMNS)
    # Per case: weightings (reference first), then restorers (reference restorer first).
    c1 = ov[ov["case"] == "c1"]
    assert list(zip(c1["part_kind"], c1["part"], strict=True)) == [
        ("weighting", "unweighted"),
        ("weighting", "handcrafted"),
        ("weighting", "dlw:x"),
        ("restorer", "tv"),
        ("restorer", "nn"),
        ("restorer", "bm4d"),
    ]
    assert list(ov["case"]) == ["c1"] * 6 + ["c2"] * 6
    assert set(ov["task"]) == {"denoise"}
    d = cell(ov, "weighting", "dlw:x", "c1")
    assert (d.method, d.role, d.restorers, d.n) == ("dlw", "weighting", 2, 3)
    assert cell(ov, "weighting", "handcrafted", "c1").method == ""
    assert bool(cell(ov, "restorer", "bm4d", "c1").oracle_informed)
    assert not bool(d.oracle_informed)
    assert cell(ov, "restorer", "bm4d", "c2").role == "peer"
    assert d.anchor == "case-c1"
    assert cell(ov, "restorer", "nn", "c2").anchor == "case-c2--nn"  # its table of weightings
    assert cell(ov, "restorer", "bm4d", "c2").anchor == "case-c2-restorers"  # takes none


def test_weighting_gain_interval_and_p_match_hand_computation(ov):
    q = stats.t.ppf(0.975, 2)
    # c1 dlw:x, seeds averaged first: tv 23, 23, 28 against 20, 22, 24 → 3, 1, 4;
    # nn 23, 26, 26 against 21, 23.5, 25 → 2, 2.5, 1; per image 2.5, 1.75, 2.5 → mean 6.75/3.
    d = weighting_diffs("c1", "dlw:x")
    np.testing.assert_allclose(d, [2.5, 1.75, 2.5])
    r = cell(ov, "weighting", "dlw:x", "c1")
    assert r.gain == pytest.approx(2.25)
    half = q * np.std(d, ddof=1) / math.sqrt(3)
    assert (r.ci_low, r.ci_high) == (pytest.approx(2.25 - half), pytest.approx(2.25 + half))
    assert r.p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert r.test == "t"
    # The image is the unit: n = 3, not the 12 (restorer, seed) runs; pooling the runs as if
    # independent would give a much narrower interval.
    assert r.n == 3
    runs = [2, 4, 1, 1, 3, 5, 2, 2, 1.5, 3.5, 1, 1]  # tv then nn, seeds 0/1 per image
    assert np.mean(runs) == pytest.approx(2.25)
    pooled = stats.t.ppf(0.975, 11) * np.std(runs, ddof=1) / math.sqrt(12)
    assert pooled < 0.8 * half
    # Every weighting cell against a direct computation.
    for case in ("c1", "c2"):
        for w in ("handcrafted", "dlw:x"):
            d = weighting_diffs(case, w)
            r = cell(ov, "weighting", w, case)
            assert r.gain == pytest.approx(d.mean())
            assert r.p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
            assert r.ci_high - r.gain == pytest.approx(q * np.std(d, ddof=1) / math.sqrt(3))
    # The part's mean MPSNR: per image the mean over restorers, then over images.
    want = np.mean([np.mean([x("c1", r, "dlw:x", i) for r in ("tv", "nn")]) for i in IMAGES])
    assert cell(ov, "weighting", "dlw:x", "c1").mpsnr_mean == pytest.approx(want)
    ref = cell(ov, "weighting", "unweighted", "c2")
    assert bool(ref.is_reference) and ref.gain == 0.0 and math.isnan(ref.p)
    assert math.isnan(ref.p_holm) and ref.sign == 0 and ref.colour == "#ffffff"


def test_restorer_gain_against_the_reference_restorer(ov):
    q = stats.t.ppf(0.975, 2)
    # bm4d (no weighting) against tv with unweighted, c1: 22−20, 23−22, 27−24 = 2, 1, 3.
    b = cell(ov, "restorer", "bm4d", "c1")
    assert b.gain == pytest.approx(2.0)
    assert b.ci_high - b.gain == pytest.approx(q / math.sqrt(3))
    assert b.p == pytest.approx(1.0 - 2 * math.sqrt(3) / math.sqrt(12 + 2))  # t = 2√3, 2 dof
    assert b.mpsnr_mean == pytest.approx(24.0) and b.restorers == 1
    # nn with the reference weighting against tv: 1, 1.5, 1.
    n = cell(ov, "restorer", "nn", "c1")
    assert n.gain == pytest.approx(3.5 / 3)
    assert n.p == pytest.approx(stats.ttest_1samp([1.0, 1.5, 1.0], 0.0).pvalue)
    assert n.mpsnr_mean == pytest.approx((21 + 23.5 + 25) / 3)
    # c2: bm4d 31, 30, 31.5 against 30, 31, 29.
    b2 = cell(ov, "restorer", "bm4d", "c2")
    assert b2.gain == pytest.approx(np.mean([1.0, -1.0, 2.5]))
    t = cell(ov, "restorer", "tv", "c1")
    assert bool(t.is_reference) and t.gain == 0.0 and math.isnan(t.p) and t.role == "target"
    assert t.mpsnr_mean == pytest.approx(22.0)


def test_holm_runs_over_every_non_reference_cell(ov):
    p = {
        (k, part, case): float(r)
        for k, part, case, r, ref in zip(
            ov["part_kind"], ov["part"], ov["case"], ov["p"], ov["is_reference"], strict=True
        )
        if not ref
    }
    assert len(p) == 8  # 2 cases × (2 weightings + 2 restorers)
    want = hand_holm(p)
    for (k, part, case), adjusted in want.items():
        r = cell(ov, k, part, case)
        assert r.p_holm == pytest.approx(adjusted)
        assert bool(r.significant) == (adjusted < 0.05)
        assert r.sign == (int(np.sign(r.gain)) if adjusted < 0.05 else 0)
    # The smallest p is multiplied by the family size m = 8.
    smallest = min(p, key=p.get)
    assert cell(ov, *smallest).p_holm == pytest.approx(min(1.0, 8 * p[smallest]))
    # A 99% overview is stricter: fewer (or as many) significant cells.
    strict = overview(table(HAND), confidence=0.99)
    assert strict["significant"].sum() <= ov["significant"].sum()


def test_sign_flip_option_uses_the_exact_test():
    ov = overview(table(HAND), test="sign-flip")
    r = cell(ov, "weighting", "dlw:x", "c1")
    # Diffs 2.5, 1.75, 2.5, all positive: only the all-+ and all-− of 8 patterns reach |mean|.
    assert r.test == "sign-flip" and r.p == pytest.approx(0.25)


def test_colours_scale_with_the_largest_gain(ov):
    g = ov["gain"].abs()
    top = ov.loc[g.idxmax()]
    assert top.gain > 0 and top.colour == diverging_colour(1.0, 1.0)
    for gain, colour in zip(ov["gain"], ov["colour"], strict=True):
        assert colour == diverging_colour(gain, g.max())


def test_missing_reference_restorer_gives_nan_with_a_note():
    values = {k: v for k, v in HAND.items() if not (k[0] == "c2" and k[1] == "tv")}
    ov = overview(table(values))
    c2 = ov[(ov["case"] == "c2") & (ov["part_kind"] == "restorer")]
    assert list(c2["part"]) == ["nn", "bm4d"]
    assert c2["gain"].isna().all() and (c2["n"] == 0).all()
    assert all("reference restorer 'tv' not run" in n for n in c2["note"])
    # The weightings of c2 average over nn alone there.
    r = cell(ov, "weighting", "dlw:x", "c2")
    assert r.restorers == 1
    assert r.gain == pytest.approx(weighting_diffs("c2", "dlw:x", restorers=("nn",)).mean())
    # c1 is untouched; NaN cells enter no Holm family (m = 4 + 2 = 6).
    assert cell(ov, "restorer", "bm4d", "c1").gain == pytest.approx(2.0)
    assert ov.loc[~ov["is_reference"], "p"].notna().sum() == 6


def test_a_typo_in_a_reference_is_an_error():
    with pytest.raises(ValueError, match="reference restorer 'tvv'"):
        overview(table(HAND), reference_restorer="tvv")
    with pytest.raises(ValueError, match="reference weighting 'oracle'"):
        overview(table(HAND), reference="oracle")


def test_other_reference_weighting_and_restorer():
    ov = overview(table(HAND), reference="handcrafted", reference_restorer="nn")
    r = cell(ov, "weighting", "unweighted", "c1")
    assert r.gain == pytest.approx(-weighting_diffs("c1", "handcrafted").mean())
    # tv against nn, both with handcrafted, c1: 21−22, 22.5−24, 25−26.
    t = cell(ov, "restorer", "tv", "c1")
    assert t.gain == pytest.approx(np.mean([-1.0, -1.5, -1.0])) and t.reference == "nn"
    assert bool(cell(ov, "restorer", "nn", "c1").is_reference)


def test_task_column_optional_and_tasks_grouped():
    df = table(HAND).drop(columns=["task"])
    assert set(overview(df)["task"]) == {"denoise"}
    df = table(HAND)
    df.loc[df["case"] == "c1", "task"] = "sr-x2"
    ov = overview(df)
    assert list(dict.fromkeys(ov["task"])) == ["sr-x2", "denoise"]
    assert len(headline(ov)) == 2 and headline(ov)[0].startswith("Task sr-x2 (1 case): ")


def test_matrix_pivots_parts_by_task_and_case(ov):
    m = overview_matrix(ov)
    assert list(m.index) == [
        ("weighting", "unweighted"),
        ("weighting", "handcrafted"),
        ("weighting", "dlw:x"),
        ("restorer", "tv"),
        ("restorer", "nn"),
        ("restorer", "bm4d"),
    ]
    assert list(m.columns) == [("denoise", "c1"), ("denoise", "c2")]
    assert m.loc[("weighting", "dlw:x"), ("denoise", "c1")] == pytest.approx(2.25)
    assert m.loc[("restorer", "bm4d"), ("denoise", "c1")] == pytest.approx(2.0)
    csv = m.to_csv()
    assert csv.splitlines()[0].startswith("task,") and "dlw:x" in csv


def fake_ov(cells) -> pd.DataFrame:
    """A hand-made overview: (kind, part, case, gain, p_holm, is_reference)."""
    rows = [
        {
            "part_kind": k,
            "part": part,
            "method": "",
            "role": k,
            "oracle_informed": False,
            "is_reference": ref,
            "task": "denoise",
            "case": case,
            "gain": gain,
            "p_holm": p,
        }
        for k, part, case, gain, p, ref in cells
    ]
    return pd.DataFrame(rows)


def test_ranking_mean_ranks_with_ties():
    nan = math.nan
    ov = fake_ov(
        [
            ("weighting", "ref", "c1", 0.0, nan, True),
            ("weighting", "A", "c1", 1.0, 0.01, False),
            ("weighting", "B", "c1", 1.0, 0.3, False),
            ("weighting", "ref", "c2", 0.0, nan, True),
            ("weighting", "A", "c2", 2.0, 0.2, False),
            ("weighting", "B", "c2", -1.0, 0.001, False),
            ("weighting", "ref", "c3", 0.0, nan, True),
            ("weighting", "A", "c3", nan, nan, False),
            ("weighting", "B", "c3", 0.0, 0.9, False),
            ("restorer", "tv", "c1", 0.0, nan, True),
            ("restorer", "bm4d", "c1", 1.0, 0.04, False),
        ]
    )
    r = ranking(ov)
    assert list(r.columns) == list(RANKING_COLUMNS)
    # c1: A, B tie at 1.5, ref 3; c2: A 1, ref 2, B 3; c3 (A has no gain): ref, B tie at 1.5.
    assert list(zip(r["part_kind"], r["part"], strict=True)) == [
        ("weighting", "A"),
        ("weighting", "B"),
        ("weighting", "ref"),
        ("restorer", "bm4d"),
        ("restorer", "tv"),
    ]
    r = r.set_index("part")
    assert r.loc["A", "mean_rank"] == pytest.approx(1.25) and r.loc["A", "n_cases"] == 2
    assert r.loc["B", "mean_rank"] == pytest.approx(2.0) and r.loc["B", "n_cases"] == 3
    assert r.loc["ref", "mean_rank"] == pytest.approx(6.5 / 3)
    half = stats.t.ppf(0.975, 1) * np.std([1.5, 1.0], ddof=1) / math.sqrt(2)
    assert r.loc["A", "rank_ci_high"] == pytest.approx(1.25 + half)
    assert r.loc["ref", "rank_ci_low"] == pytest.approx(
        6.5 / 3 - stats.t.ppf(0.975, 2) * np.std([3.0, 2.0, 1.5], ddof=1) / math.sqrt(3)
    )
    # Wins: significant (Holm p < 0.05) and better; B's significant loss is no win.
    assert (r.loc["A", "wins"], r.loc["B", "wins"], r.loc["bm4d", "wins"]) == (1, 0, 1)
    assert r.loc["A", "gain_mean"] == pytest.approx(1.5)
    assert math.isnan(r.loc["bm4d", "rank_ci_low"])
    assert bool(r.loc["ref", "is_reference"])
    assert ranking(ov, confidence=0.99).set_index("part").loc["bm4d", "wins"] == 0
    assert "mean rank over cases" in RANK_AGGREGATION


def synthetic(effects: dict, restorer_effect: dict, noise: float, seed: int = 0, cases=4):
    """FAKE table: 5 images per case, restorers tv, tvs (with every weighting) and bm4d (peer)."""
    rng = np.random.default_rng(seed)
    values = {}
    for c in range(cases):
        case = f"k{c}"
        for r, r_eff in restorer_effect.items():
            ws = ["none"] if r == "bm4d" else list(effects)
            for w in ws:
                eff = r_eff + effects.get(w, 0.0)
                values[(case, r, w)] = {
                    f"i{i}": [20.0 + c + i + eff + float(rng.normal(0, noise))] for i in range(5)
                }
    return table(values)


def test_headline_names_significant_gains():
    effects = {"unweighted": 0.0, "handcrafted": 0.5, "oracle": 3.0, "dlw:x": 2.0}
    ov = overview(synthetic(effects, {"tv": 0.0, "tvs": 1.2, "bm4d": 0.4}, noise=0.02))
    [sentence] = headline(ov)
    oracle = ov[(ov["part"] == "oracle")]["gain"].mean()
    dlw = ov[(ov["part"] == "dlw:x")]["gain"].mean()
    tvs = ov[(ov["part"] == "tvs") & (ov["part_kind"] == "restorer")]["gain"].mean()
    assert oracle == pytest.approx(3.0, abs=0.05) and tvs == pytest.approx(1.2, abs=0.05)
    assert sentence == (
        f"Task denoise (4 cases): best weighting oracle† {oracle:+.2f} dB over unweighted "
        f"(significant in 4 of 4 cases); best learned weighting dlw:x {dlw:+.2f} dB over "
        f"unweighted (significant in 4 of 4 cases); best restorer tvs {tvs:+.2f} dB over tv "
        f"(significant in 4 of 4 cases)."
    )


def test_headline_says_tied_for_noise():
    effects = {"unweighted": 0.0, "handcrafted": 0.0, "dlw:x": 0.0}
    ov = overview(
        synthetic(effects, {"tv": 0.0, "tvs": 0.0, "bm4d": 0.0}, noise=0.3, seed=3, cases=2)
    )
    assert not ov["significant"].any()
    assert headline(ov) == [
        "Task denoise (2 cases): weightings: tied with unweighted (none significantly better "
        "after Holm, n = 5 images per case); restorers: tied with tv (none significantly "
        "better after Holm, n = 5 images per case)."
    ]


def test_headline_reports_a_significant_loss():
    effects = {"unweighted": 0.0, "handcrafted": -2.0}
    ov = overview(synthetic(effects, {"tv": 0.0, "bm4d": 0.0}, noise=0.02, cases=2))
    [sentence] = headline(ov)
    assert (ov[ov["part"] == "handcrafted"]["sign"] == -1).all()
    # A significant loss is no win: the weightings are "tied", and the loss is counted.
    assert "weightings: tied with unweighted" in sentence
    assert "; 1 significantly worse in some case)" in sentence
    assert "best" not in sentence.split(";")[0]  # no learned weighting in these results


def luminance(hex_colour: str) -> float:
    """WCAG relative luminance of an sRGB colour."""
    c = [int(hex_colour[k : k + 2], 16) / 255 for k in (1, 3, 5)]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_diverging_colour():
    assert diverging_colour(0.0, 2.0) == "#ffffff"
    assert diverging_colour(math.nan, 2.0) == "#ffffff"
    assert diverging_colour(1.0, 0.0) == "#ffffff"  # no scale: nothing to show
    pos, neg = diverging_colour(2.0, 2.0), diverging_colour(-2.0, 2.0)
    assert (pos, neg) == ("#e08214", "#4393c3")
    # Hue from the sign: orange has more red than blue, blue more blue than red.
    assert int(pos[1:3], 16) > int(pos[5:7], 16) and int(neg[5:7], 16) > int(neg[1:3], 16)
    # Clipped beyond ±scale; symmetric scale; halfway is the midpoint blend with white.
    assert diverging_colour(5.0, 2.0) == pos and diverging_colour(-9.0, 2.0) == neg
    assert diverging_colour(math.inf, 2.0) == pos
    # t = 1/2: (255 + 0xe0)/2 = 239.5, (255 + 0x82)/2 = 192.5, (255 + 0x14)/2 = 137.5, rounded
    # half to even.
    assert diverging_colour(1.0, 2.0) == "#f0c08a"
    # Lighter towards 0, and black text readable everywhere (WCAG contrast ≥ 4.5).
    ramp = [diverging_colour(v, 2.0) for v in (0.5, 1.0, 1.5, 2.0)]
    lum = [luminance(c) for c in ramp]
    assert lum == sorted(lum, reverse=True)
    for colour in (pos, neg):
        assert (luminance(colour) + 0.05) / 0.05 >= 4.5
