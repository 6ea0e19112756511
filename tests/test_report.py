"""The report stage: statistics against hand computations, escaping of hostile strings, an
offline self-contained page, byte-identical reruns and clear errors. All data here is FAKE
(tests/fixtures_report.py) and lives in temporary folders, never in reports/."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dom import Dom, table_rows
from fixtures_report import (
    FAKE_META,
    HOSTILE,
    fake_gallery,
    fake_results,
    hostile_meta,
    hostile_results,
    rows_from,
    write_fake,
)
from scipy import stats

from pipeline.io import write_parquet
from pipeline.report.build import (
    OUTS,
    ReportOptions,
    build_report,
    read_gallery,
    read_results,
    write_report,
)
from pipeline.report.leaderboard import leaderboard
from pipeline.report.stats import holm, paired_p, sign_flip_p, t_interval

ROOT = Path(__file__).resolve().parents[1]

# FAKE hand-computation table: one case, restorer tv, three images.
#   unweighted (one run):        a 20, b 23, c 26
#   handcrafted (one run):       a 21, b 23.5, c 26.5        → diffs 1, 0.5, 0.5
#   dlw:nn seed 0 / seed 1:      a 21/23, b 24/24, c 28/30   → image means 22, 24, 29; diffs 2, 1, 3
HAND = [
    ("unweighted", -1, "a", 20.0),
    ("unweighted", -1, "b", 23.0),
    ("unweighted", -1, "c", 26.0),
    ("handcrafted", -1, "a", 21.0),
    ("handcrafted", -1, "b", 23.5),
    ("handcrafted", -1, "c", 26.5),
    ("dlw:nn", 0, "a", 21.0),
    ("dlw:nn", 1, "a", 23.0),
    ("dlw:nn", 0, "b", 24.0),
    ("dlw:nn", 1, "b", 24.0),
    ("dlw:nn", 0, "c", 28.0),
    ("dlw:nn", 1, "c", 30.0),
]


def t2_p(t: float) -> float:
    """Two-sided p of Student's t with 2 dof, in closed form: 1 − t/√(t² + 2)."""
    return 1.0 - abs(t) / math.sqrt(t * t + 2.0)


@pytest.fixture(scope="module")
def hand():
    return leaderboard(rows_from(HAND)).set_index("weighting")


def test_seeds_are_averaged_per_image_before_the_interval(hand):
    r = hand.loc["dlw:nn"]
    q = stats.t.ppf(0.975, 2)
    # Image means 22, 24, 29: mean 25, deviations −3, −1, 4, s² = 26/2 = 13.
    assert r.n == 3 and r.n_seeds == 2 and r.mpsnr_n == 3
    assert r.mpsnr_mean == pytest.approx(25.0)
    assert r.mpsnr_ci_high - r.mpsnr_mean == pytest.approx(q * math.sqrt(13.0) / math.sqrt(3.0))
    # Pooling the six runs as if independent would give a narrower, wrong interval.
    pooled = t_interval([21, 23, 24, 24, 28, 30])
    assert pooled.half < (r.mpsnr_ci_high - r.mpsnr_ci_low) / 2 - 0.5
    # Seed spread: per-seed image means 73/3 and 77/3, std with one dof = (4/3)/√2.
    assert r.mpsnr_seed_std == pytest.approx((4.0 / 3.0) / math.sqrt(2.0))
    assert math.isnan(hand.loc["unweighted"].mpsnr_seed_std)


def test_paired_gains_and_holm_match_hand_computation(hand):
    q = stats.t.ppf(0.975, 2)
    d = hand.loc["dlw:nn"]
    # Diffs 2, 1, 3: mean 2, s = 1, t = 2/(1/√3) = 2√3.
    assert d.mpsnr_gain == pytest.approx(2.0)
    assert d.mpsnr_gain_ci_high - d.mpsnr_gain == pytest.approx(q / math.sqrt(3.0))
    p_dlw = t2_p(2.0 * math.sqrt(3.0))
    assert d.mpsnr_p == pytest.approx(p_dlw)
    h = hand.loc["handcrafted"]
    # Diffs 1, 0.5, 0.5: mean 2/3, s² = (1/9 + 2/36)/2 = 1/12, t = (2/3)/(√(1/12)/√3) = 4.
    assert h.mpsnr_gain == pytest.approx(2.0 / 3.0)
    p_hc = t2_p(4.0)
    assert h.mpsnr_p == pytest.approx(p_hc)
    # Holm over m = 2 (the unweighted reference is no comparison): the smaller p (handcrafted)
    # ×2; the larger takes max(own ×1, previous) — here the previous, 2·p_hc > p_dlw.
    assert h.mpsnr_p_holm == pytest.approx(2.0 * p_hc)
    assert d.mpsnr_p_holm == pytest.approx(max(2.0 * p_hc, p_dlw)) and 2.0 * p_hc > p_dlw
    u = hand.loc["unweighted"]
    assert u.mpsnr_gain == 0.0 and math.isnan(u.mpsnr_p) and math.isnan(u.mpsnr_p_holm)
    assert set(hand["reference"]) == {"unweighted"}
    # Rank by mean MPSNR within (case, restorer): 25 > 23.67 > 23.
    assert (d["rank"], h["rank"], u["rank"]) == (1, 2, 3)
    # SAM is 0.3 − MPSNR/200 in the fake table: lower is better, so the gain is negative.
    assert d.sam_gain == pytest.approx(-2.0 / 200.0)


def test_reference_option_moves_the_reference():
    lb = leaderboard(rows_from(HAND), reference="handcrafted").set_index("weighting")
    assert set(lb["reference"]) == {"handcrafted"}
    h, u, d = lb.loc["handcrafted"], lb.loc["unweighted"], lb.loc["dlw:nn"]
    # The reference is no comparison: gain 0 over its own images, no p-value.
    assert h.mpsnr_gain == 0.0 and math.isnan(h.mpsnr_p) and math.isnan(h.mpsnr_p_holm)
    # Unweighted against handcrafted: diffs −1, −0.5, −0.5, the negative of the default gain,
    # with the same two-sided p (t = −4).
    assert u.mpsnr_gain == pytest.approx(-2.0 / 3.0)
    assert u.mpsnr_p == pytest.approx(t2_p(4.0))
    # dlw:nn image means 22, 24, 29 against 21, 23.5, 26.5: diffs 1, 0.5, 2.5, mean 4/3,
    # s² = (1/9 + 25/36 + 49/36)/2 = 13/12, t = (4/3)/√(13/36) = 8/√13.
    q = stats.t.ppf(0.975, 2)
    assert d.mpsnr_gain == pytest.approx(4.0 / 3.0)
    assert d.mpsnr_gain_ci_high - d.mpsnr_gain == pytest.approx(q * math.sqrt(13.0 / 36.0))
    p_d = t2_p(8.0 / math.sqrt(13.0))
    assert d.mpsnr_p == pytest.approx(p_d)
    # Holm over m = 2: 2·p(t = 4) ≈ 0.114 < p_d ≈ 0.157, so the larger keeps its own p.
    assert u.mpsnr_p_holm == pytest.approx(2.0 * t2_p(4.0))
    assert d.mpsnr_p_holm == pytest.approx(p_d) and p_d > 2.0 * t2_p(4.0)
    # Means, intervals and ranks do not depend on the reference.
    default = leaderboard(rows_from(HAND)).set_index("weighting")
    for col in ("mpsnr_mean", "mpsnr_ci_low", "mpsnr_seed_std", "rank", "n_seeds"):
        pd.testing.assert_series_equal(lb[col], default.loc[lb.index, col])
    # A reference that no cell of a restorer has: no gains there, nothing else breaks.
    none = leaderboard(rows_from(HAND), reference="oracle")
    assert none["mpsnr_gain"].isna().all() and set(none["reference"]) == {""}


def test_seeds_are_the_distinct_weighting_and_restorer_seed_pairs():
    # A learned weighting (seeds 0, 1) with a learned restorer (seeds 0, 1): four runs per
    # image. Image a: 20, 22, 24, 26; image b: one more each.
    runs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    entries = [("dlw:nn", ws, rs, "a", 20.0 + 2 * k) for k, (ws, rs) in enumerate(runs)]
    entries += [("dlw:nn", ws, rs, "b", 21.0 + 2 * k) for k, (ws, rs) in enumerate(runs)]
    entries += [("unweighted", -1, rs, i, v) for rs in (0, 1) for i, v in (("a", 20), ("b", 22))]
    lb = leaderboard(rows_from(entries, restorer="toy", restorer_method="toy"))
    r = lb.set_index("weighting").loc["dlw:nn"]
    assert r.n == 2 and r.n_seeds == 4 and r.n_rows == 8
    assert r.restorer_method == "toy" and r.weighting_method == "dlw"
    assert r.weighting_variant == "nn" and r.restorer_role == "target"
    # Image means 23, 24 → 23.5; per-pair means 20.5, 22.5, 24.5, 26.5 → SD √(20/3) (the
    # weighting seed alone would give two groups and SD 2√2).
    assert r.mpsnr_mean == pytest.approx(23.5)
    assert r.mpsnr_seed_std == pytest.approx(math.sqrt(20.0 / 3.0))
    # Paired against unweighted (image means 20, 22): diffs 3, 2.
    assert r.mpsnr_gain == pytest.approx(2.5)
    assert lb.set_index("weighting").loc["unweighted"].n_seeds == 2


def test_sign_flip_and_holm_and_small_n():
    # Diffs 2, 1, 3 all positive: only the all-+ and all-− patterns reach |mean| 2 → 2/8.
    assert sign_flip_p([2.0, 1.0, 3.0]) == pytest.approx(0.25)
    # 1, −1, 2: the sums ±1 ±1 ±2 are 4, 0, 2, −2, 2, −2, 0, −4; |observed| = 2 → 6 of 8.
    assert sign_flip_p([1.0, -1.0, 2.0]) == pytest.approx(6 / 8)
    lb = leaderboard(rows_from(HAND), test="sign-flip").set_index("weighting")
    assert lb.loc["dlw:nn"].mpsnr_p == pytest.approx(0.25)
    assert lb.loc["dlw:nn"].mpsnr_test == "sign-flip"
    p = holm([0.01, 0.04, math.nan, 0.03, 0.005])
    np.testing.assert_allclose(p, [0.03, 0.06, math.nan, 0.06, 0.02])
    one = t_interval([3.0])
    assert one.mean == 3.0 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high)
    assert math.isnan(paired_p([1.0, 2.0], [0.0, 1.0])[0])  # equal diffs: no t statistic


def parse(html: str) -> Dom:
    dom = Dom(html)
    assert not dom.errors, dom.errors[:5]
    return dom


def boards(dom: Dom, first: str = "Weighting") -> list[tuple[list[str], list]]:
    """The detailed tables (header row starting Rank, <first>) as (headers, rows of cells)."""
    out = []
    for t in dom.find_all("table"):
        head, rows = table_rows(t)
        if head[:2] == ["Rank", first]:
            out.append((head, rows))
    return out


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """FAKE Parquet inputs and the report built from them in this process."""
    root = tmp_path_factory.mktemp("report")
    results = fake_results()
    write_fake(root / "in", results, fake_gallery(results))
    df, meta = read_results(root / "in/results.parquet")
    report = build_report(df, read_gallery(root / "in/gallery.parquet"), meta)
    write_report(report, root / "a")
    return root, report


def test_stage_rerun_in_a_fresh_process_gives_identical_bytes(fake, tmp_path):
    root, report = fake
    reports = tmp_path / "reports"
    reports.mkdir()
    for name in ("results.parquet", "gallery.parquet"):
        (reports / name).write_bytes((root / "in" / name).read_bytes())
    (tmp_path / "params.yaml").write_text("report: {confidence: 0.95}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.report"], cwd=tmp_path, env=env, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode()
    # All three outs, inline PNG charts included, are the same bytes in another process.
    for name in OUTS:
        assert (reports / name).read_bytes() == (root / "a" / name).read_bytes(), name
    assert report.html.count("data:image/png;base64,") >= 3 + 5


def test_stage_names_a_missing_results_file(tmp_path, monkeypatch):
    # ``stages`` is not an installed package (only ``pipeline`` is): import it from the repo.
    monkeypatch.syspath_prepend(str(ROOT))
    from stages._common import run
    from stages.report import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("report: {}\n")
    with pytest.raises(SystemExit) as exc:
        run("report", main)
    msg = str(exc.value)
    assert msg.startswith("[report] error: reports/results.parquet: results table not found")
    assert not (tmp_path / "reports").exists()


def test_leaderboard_and_metrics_contents(fake):
    root, _ = fake
    lb = pd.read_parquet(root / "a/leaderboard.parquet")
    # 2 cases × (3 restorers taking weightings × 6 weightings + 2 peers + 1 learned restorer).
    assert len(lb) == 2 * (3 * 6 + 2 + 1)
    assert set(lb["n"]) == {3}
    learned_w = lb.weighting_method != ""
    learned_r = lb.restorer_method != ""
    # Seeds: distinct (weighting seed, restorer seed) pairs, 2 × 2 where both are learned.
    assert set(lb.loc[learned_w & ~learned_r, "n_seeds"]) == {2}
    assert set(lb.loc[learned_w & learned_r, "n_seeds"]) == {4}
    assert set(lb.loc[~learned_w & ~learned_r, "n_seeds"]) == {1}
    assert set(lb.loc[~learned_w & learned_r, "n_seeds"]) == {2}
    assert set(lb.loc[learned_w, "weighting_method"]) == {"dlw", "toy"}
    m = json.loads((root / "a/metrics.json").read_text())
    assert list(m) == sorted(m) and m["synthetic"] is True and m["reference"] == "unweighted"
    for case, e in m["cases"].items():
        var = lb[(lb.case == case) & (lb.weighting != "none")]
        gains = var.groupby("weighting").mpsnr_gain.mean()
        means = var.groupby("weighting").mpsnr_mean.mean()
        achievable = gains.drop(["unweighted", "oracle"])
        assert e["best_weighting"] == achievable.idxmax()
        assert e["best_weighting_gain_db"] == pytest.approx(achievable.max(), abs=1e-4)
        assert e["best_dlw"] == "nn"  # the fake table gives dlw:nn the larger effect
        assert e["best_dlw_gain_db"] == pytest.approx(gains["dlw:nn"], abs=1e-4)
        # One key set per method that provides weightings, named from the data.
        assert e["best_toy"] == "a" and e["mpsnr_best_toy"] == pytest.approx(
            means["toy:a"], abs=1e-4
        )
        assert e["best_toy_gain_db"] == pytest.approx(gains["toy:a"], abs=1e-4)
        assert e["mpsnr_unweighted"] == pytest.approx(means["unweighted"], abs=1e-4)
        assert e["mpsnr_reference"] == e["mpsnr_unweighted"]
        assert e["handcrafted_gain_db"] == pytest.approx(gains["handcrafted"], abs=1e-4)
        assert e["oracle_gain_db"] == pytest.approx(gains["oracle"], abs=1e-4)
        assert "unweighted_gain_db" not in e  # the reference is no comparison
        plain = lb[(lb.case == case) & (lb.weighting == "none")].set_index("restorer")
        for restorer in ("bm4d", "tv_l1", "toy:b"):
            assert e[f"mpsnr_{restorer}"] == pytest.approx(plain.mpsnr_mean[restorer], abs=1e-4)
    # The Holm family is every MPSNR comparison of the table (not per case or restorer).
    p = lb["mpsnr_p"].to_numpy()
    np.testing.assert_allclose(lb["mpsnr_p_holm"].to_numpy(), holm(p))
    assert np.isfinite(p).sum() == 2 * 3 * 5


def test_rows_without_weighting_get_no_gain(fake):
    _, report = fake
    lb = report.leaderboard
    plain = lb[lb.weighting == "none"]
    assert set(plain.restorer) == {"bm4d", "tv_l1", "toy:b"}
    assert set(plain.restorer_role) == {"peer", "learned"}
    assert set(plain.loc[plain.restorer_role == "peer", "restorer"]) == {"bm4d", "tv_l1"}
    assert set(plain.reference) == {""}
    for m in ("mpsnr", "mssim", "sam", "ergas"):
        assert plain[f"{m}_gain"].isna().all() and plain[f"{m}_p_holm"].isna().all()
        assert (plain[f"{m}_gain_n"] == 0).all()
    # Every row that takes a weighting has one, and the reference rows are no comparison.
    weighted = lb[lb.weighting != "none"]
    assert set(weighted.reference) == {"unweighted"}
    ref = weighted[weighted.weighting == "unweighted"]
    assert (ref.mpsnr_gain == 0.0).all() and ref.mpsnr_p.isna().all()
    # On the page: the table of restorers without weighting shows – as their gain.
    tables = boards(parse(report.html), "Restorer (role)")
    assert len(tables) == 2  # one per case
    for _, rows in tables:
        names = sorted(row[1].text() for row in rows)
        assert names == ["bm4d (peer) †", "toy:b (learned, method toy)", "tv_l1 (peer)"]
        assert {row[3].text() for row in rows} == {"–"}


def test_learned_restorer_appears_in_leaderboard_and_page(fake):
    _, report = fake
    lb = report.leaderboard
    toy = lb[lb.restorer == "toy"]
    assert len(toy) == 2 * 6 and set(toy.restorer_method) == {"toy"}
    assert set(toy.restorer_role) == {"target"} and set(toy.restorer_variant) == {""}
    others = toy[toy.weighting != "unweighted"]
    assert np.isfinite(others.mpsnr_gain).all() and np.isfinite(others.mpsnr_p).all()
    assert set(toy["rank"]) == set(range(1, 7))
    dom = parse(report.html)
    for case in sorted(set(lb.case)):
        section = dom.find("section", id=f"case-{case.replace('_', '-')}--toy")
        assert section is not None and "learned, method toy" in section.find("h4").text()
    # The headline table has a column pair per weighting method and the learned restorer's MPSNR.
    headline, _ = table_rows(dom.find("table", id="headline-table"))
    assert headline[:3] == ["Case", "n images", "Best weighting"]
    for col in ("Best dlw", "dlw gain (dB)", "Best toy", "toy gain (dB)", "toy:b", "bm4d"):
        assert col in headline, (col, headline)
    # The restorer filter offers it, and its rows carry it.
    options = [o.get("value") for o in dom.find("select", id="filter-restorer").find_all("option")]
    assert "toy" in options and "toy:b" in options
    assert len(dom.find_all("tr", cls="detail-row", data_restorer="toy")) == 2 * 6


def test_html_parses_and_holds_one_row_per_weighting(fake):
    _, report = fake
    dom = parse(report.html)
    tables = boards(dom)
    assert len(tables) == 2 * 3  # one per case × restorer taking a weighting
    want = {"unweighted", "handcrafted", "oracle", "dlw:nn", "dlw:nn+tv", "toy:a"}
    for head, rows in tables:
        assert sorted(row[1].get("data-v") for row in rows) == sorted(want)
        assert all(len(row) == len(head) for row in rows)
        # Reference rows read "reference" in the gain column.
        gains = {row[1].get("data-v"): row[3].text() for row in rows}
        assert gains["unweighted"] == "reference" and gains["dlw:nn"].startswith("+")
    for tr in dom.find_all("tr", cls="detail-row"):
        assert "sortable" in next(a for a in tr.ancestors() if a.tag == "table").classes
    assert dom.find("div", cls="synthetic") is not None
    headers = {h for t in dom.find_all("table") for h in table_rows(t)[0]}
    assert {"MPSNR ↑ (dB, mean ± CI)", "SAM ↓ (rad)", "MSSIM ↑"} <= headers
    # The one unconverged fake solve, listed under convergence warnings.
    _, rows = table_rows(dom.find("table", id="unconverged"))
    assert [r[3].text() for r in rows] == ["67 %"] * len(rows) and rows
    # Nothing on the page names one method as the subject of the benchmark.
    title = dom.find("title").text()
    assert "DLW" not in title and "learned weightings and restorers" in title


def test_overview_matrix_on_the_page_matches_the_table(fake):
    """Every overview cell shows the prepared gain, carries its task and case, and links to an
    id of the page; every internal link resolves."""
    _, report = fake
    dom = parse(report.html)
    ov = report.overview
    table = dom.find("table", id="overview")
    ids = dom.ids()
    shown = 0
    for tr in table.find("tbody").find_all("tr", data_part=True):
        part = tr.get("data-part")
        for td in tr.find_all("td", cls="ov-cell"):
            row = ov[(ov["part"] == part) & (ov["case"] == td.get("data-case"))]
            if row.empty:
                continue
            r = row.iloc[0]
            assert td.get("data-task") == r["task"]
            a = td.find("a", cls="drill")
            assert a is not None and a.get("href") == f"#{r['anchor']}"
            if not r["is_reference"] and math.isfinite(r["gain"]):
                assert float(td.get("data-v")) == pytest.approx(r["gain"], abs=1e-9)
                assert a.text().startswith(f"{r['gain']:+.2f}")
                assert a.text().endswith({1: " ▲", -1: " ▼", 0: f"{r['gain']:+.2f}"}[r["sign"]])
                shown += 1
    assert shown == int((~ov["is_reference"] & ov["gain"].notna()).sum())
    hrefs = [a.get("href") for a in dom.find_all("a")]
    assert {h[1:] for h in hrefs if h.startswith("#")} <= ids
    # Every detailed row with gallery images links to a figure of the gallery.
    links = [a.get("href")[1:] for a in dom.find_all("a", cls="to-gallery")]
    assert links and all(dom.find("figure", id=x) is not None for x in links)
    # The headline sentences are the prepared ones, in order.
    assert [li.text() for li in dom.find("ul", id="headline").find_all("li")] == report.sentences


def test_tables_are_written_as_csv_and_latex(fake):
    root, report = fake
    out = root / "a"
    ov = pd.read_csv(out / "tables/overview.csv", keep_default_na=False, na_values=[""])
    assert list(ov.columns) == list(report.overview.columns)
    np.testing.assert_allclose(ov["gain"], report.overview["gain"], rtol=0, atol=0)
    lb = pd.read_csv(out / "leaderboard.csv")
    np.testing.assert_array_equal(lb["mpsnr_mean"], report.leaderboard["mpsnr_mean"])
    names = {p.stem for p in (out / "tables").iterdir()}
    assert {"overview", "overview-matrix", "ranking", "headline", "details"} <= names
    assert {"dlw-weight-maps", "dlw-source-sets"} <= names  # DLW's own sections
    for stem in names:
        tex = (out / "tables" / f"{stem}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex and "\\begin{tabular}" in tex
    # The page links each of them.
    dom = parse(report.html)
    hrefs = {a.get("href") for a in dom.find(id="downloads").find_all("a")}
    assert {f"tables/{n}.{e}" for n in names for e in ("csv", "tex")} <= hrefs
    assert {"leaderboard.parquet", "leaderboard.csv"} <= hrefs
    assert not list((out / "figures/page").iterdir())  # images embedded by default


def test_images_go_to_files_past_the_inline_limit(tmp_path):
    results = fake_results()
    report = build_report(
        results, fake_gallery(results), FAKE_META, ReportOptions(inline_images_max_mb=0)
    )
    write_report(report, tmp_path)
    dom = parse(report.html)
    srcs = [img.get("src") for img in dom.find_all("img")]
    assert srcs and all(s.startswith("figures/page/") and s.endswith(".png") for s in srcs)
    for s in set(srcs):
        data = (tmp_path / s).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(set(srcs)) == len(list((tmp_path / "figures/page").iterdir()))


def test_methods_add_sections_through_the_hook(monkeypatch):
    """A registered method's sections appear on the page and beside it, without the report
    knowing its name; DLW's own parts come through the same hook."""
    from pipeline.methods import registry
    from pipeline.methods.base import Method
    from pipeline.report.sections import Section

    class Toy(Method):
        name = "toy"

        @classmethod
        def report_sections(cls, results, lb, options):
            t = lb[lb["weighting_method"] == "toy"][["case", "restorer", "mpsnr_gain"]]
            return [Section("toy-gains", "Toy: gains", "From the toy.", t.reset_index(drop=True),
                            {"case": "Case", "mpsnr_gain": "Gain"}, {"mpsnr_gain": 2})]  # fmt: skip

    monkeypatch.setitem(registry.METHODS, "toy", Toy)
    report = build_report(fake_results(), None, FAKE_META)
    dom = parse(report.html)
    section = dom.find("section", id="toy-gains")
    assert section is not None and section.find("h2").text() == "Toy: gains"
    head, rows = table_rows(section.find("table"))
    assert head == ["Case", "Gain"] and len(rows) == 2 * 3
    lb = report.leaderboard
    want = lb[lb["weighting_method"] == "toy"]["mpsnr_gain"].round(2)
    assert [float(r[1].text()) for r in rows] == pytest.approx(list(want), abs=1e-9)
    assert [e.name for e in report.exports if e.name.startswith(("toy", "dlw"))] == [
        "dlw-weight-maps", "dlw-source-sets", "toy-gains"]  # fmt: skip
    assert dom.find("section", id="dlw-weight-maps") is not None


def test_report_holds_no_hand_encoder_and_no_html_strings():
    """Images go through Pillow, markup through the templates."""
    src = "\n".join(p.read_text() for p in (ROOT / "pipeline/report").glob("*.py"))
    assert "zlib" not in src and "struct.pack" not in src
    assert not re.search(r"[\"']<(table|tr|td|div|section|figure|img|p|h[1-6])[ >]", src)


def test_page_is_self_contained_and_offline(fake):
    _, report = fake
    html = report.html
    dom = parse(html)
    for e in dom.root.iter():
        for key in ("src", "href", "action", "poster", "data"):
            value = (e.get(key) or "").strip().lower()
            assert not re.match(r"[a-z][a-z0-9+.-]*:", value) or value.startswith("data:image/png")
            assert not value.startswith("//"), (e.tag, key, value)
            if key == "src" and key in e.attrs:
                assert value.startswith("data:image/png;base64,"), (e.tag, value[:40])
        assert e.tag not in ("link", "iframe", "object", "embed")
    assert "@import" not in html and "url(" not in html


def test_hostile_strings_appear_only_escaped(tmp_path):
    results = hostile_results()
    write_fake(tmp_path, results, fake_gallery(results), hostile_meta())
    df, meta = read_results(tmp_path / "results.parquet")
    html = build_report(df, read_gallery(tmp_path / "gallery.parquet"), meta).html
    assert "<script>alert" not in html
    assert HOSTILE[1] not in html and "<img src=x" not in html
    assert html.count("<script") == 2 and html.count("</script>") == 2  # only our own two
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, escaped
    assert "&#34;&gt;&lt;img src=x onerror=1&gt;" in html  # Jinja2's escape of the quote
    assert "image &lt;/script&gt;" in html  # the hostile image id, in the gallery heading
    dom = parse(html)
    for e in dom.root.iter():
        assert not any(k.startswith("on") for k in e.attrs), (e.tag, e.attrs)
        assert e.tag != "img" or e.get("src").startswith("data:image/png;base64,")
    # The embedded JSON keeps the original strings exactly once decoded.
    data = dom.find("script", type="application/json")
    assert HOSTILE[0] in json.loads(data.text())["cases"]
    # Hostile labels are options of the filters as text, unchanged.
    cases = [o.text() for o in dom.find("select", id="filter-case").find_all("option")]
    assert HOSTILE[0] in cases
    # Hostile labels reach the charts too (matplotlib) without breaking them.
    assert html.count("data:image/png;base64,") >= 3


def test_missing_or_bad_inputs_give_clear_errors(tmp_path):
    results = fake_results(cases=("fake-x",), restorers=("tv",), seeds=(0,), peers=())
    write_parquet(tmp_path / "r.parquet", results.drop(columns=["mssim"]), FAKE_META)
    with pytest.raises(ValueError, match=r"r\.parquet: missing column\(s\) \['mssim'\]"):
        read_results(tmp_path / "r.parquet")
    with pytest.raises(FileNotFoundError, match=r"nothere\.parquet: results table not found"):
        read_results(tmp_path / "nothere.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk\.parquet: not a readable Parquet file"):
        read_results(tmp_path / "junk.parquet")
    g = fake_gallery(results).drop(columns=["band"])
    write_parquet(tmp_path / "g.parquet", g, {"fake": True})
    with pytest.raises(ValueError, match=r"g\.parquet: missing column\(s\) \['band'\]"):
        read_gallery(tmp_path / "g.parquet")
    with pytest.raises(ValueError, match=r"report\.\['colour'\]"):
        ReportOptions.from_section({"colour": 1})
    with pytest.raises(ValueError, match=r"report\.test = 'wilcoxon'"):
        ReportOptions.from_section({"test": "wilcoxon"})
    for bad in ("", "  ", 3, None, "none"):
        with pytest.raises(ValueError, match=r"report\.reference = "):
            ReportOptions.from_section({"reference": bad})
    assert ReportOptions.from_section({"reference": "handcrafted"}).reference == "handcrafted"
    with pytest.raises(ValueError, match=r"report\.reference = 'unweigthed' is no weighting"):
        build_report(results, None, FAKE_META, ReportOptions(reference="unweigthed"))
    old = results.rename(columns={"restorer": "target", "weighting_seed": "seed"})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['weighting_seed', 'restorer'\]"):
        build_report(old, None, FAKE_META)


def test_reference_option_in_the_report(fake):
    _, default = fake
    results = fake_results()
    report = build_report(results, None, FAKE_META, ReportOptions(reference="handcrafted"))
    lb = report.leaderboard
    weighted = lb[lb.weighting != "none"].set_index(["case", "restorer", "weighting"])
    before = default.leaderboard.set_index(["case", "restorer", "weighting"]).loc[weighted.index]
    assert (weighted.xs("handcrafted", level="weighting").mpsnr_gain == 0.0).all()
    np.testing.assert_allclose(
        weighted.xs("unweighted", level="weighting").mpsnr_gain,
        -before.xs("handcrafted", level="weighting").mpsnr_gain,
    )
    # Gains move with the reference: x − h = (x − u) − (h − u) per image, hence in the mean.
    shift = before.xs("handcrafted", level="weighting").mpsnr_gain
    dlw = weighted.xs("dlw:nn", level="weighting").mpsnr_gain
    np.testing.assert_allclose(dlw, before.xs("dlw:nn", level="weighting").mpsnr_gain - shift)
    m, m0 = report.metrics, default.metrics
    assert m["reference"] == "handcrafted"
    for case, e in m["cases"].items():
        e0 = m0["cases"][case]
        assert e["mpsnr_reference"] == e0["mpsnr_handcrafted"]
        assert e["unweighted_gain_db"] == pytest.approx(-e0["handcrafted_gain_db"], abs=2e-4)
        assert "handcrafted_gain_db" not in e and e["best_weighting"] != "handcrafted"
    dom = parse(report.html)
    tables = boards(dom)
    assert len(tables) == 2 * 3
    for _, rows in tables:
        gains = {row[1].get("data-v"): row[3].text() for row in rows}
        assert gains["handcrafted"] == "reference" and gains["unweighted"].startswith("-")
    ov = report.overview
    assert set(ov.loc[ov["part_kind"] == "weighting", "reference"]) == {"handcrafted"}
    assert "compared with handcrafted" in dom.find(id="overview-section").text()


def test_no_method_name_is_special(fake):
    """Renaming a method everywhere in the results changes labels and keys only."""
    _, default = fake
    results = fake_results()
    renamed = results.copy()
    for col in ("weighting", "weighting_method", "weighting_checkpoint"):
        renamed[col] = renamed[col].str.replace("dlw", "zzz", regex=False)
    report = build_report(renamed, None, FAKE_META)
    lb = report.leaderboard.set_index(["case", "restorer", "weighting"]).sort_index()
    lb0 = default.leaderboard.copy()
    lb0["weighting"] = lb0["weighting"].str.replace("dlw", "zzz", regex=False)
    lb0["weighting_method"] = lb0["weighting_method"].str.replace("dlw", "zzz", regex=False)
    lb0 = lb0.set_index(["case", "restorer", "weighting"]).sort_index()
    pd.testing.assert_frame_equal(lb, lb0)
    for case, e in report.metrics["cases"].items():
        e0 = default.metrics["cases"][case]
        assert e["best_zzz"] == e0["best_dlw"] and "best_dlw" not in e
        assert e["best_zzz_gain_db"] == e0["best_dlw_gain_db"]
        assert e["best_weighting_gain_db"] == e0["best_weighting_gain_db"]


def test_gallery_noise_level_row_shares_one_scale():
    """The gallery's σ row: the true σ under the oracle column and a learned σ̂ under its
    weighting, both coloured from 0 to the strip's largest σ (the captions say it)."""
    from pipeline.report.gallery import gallery_view
    from pipeline.report.images import ImageStore

    results = fake_results(learned_weightings=("dlw:nn",))
    g = fake_gallery(results)
    case, image = g.iloc[0]["case"], g.iloc[0]["image_id"]
    size = int(g.iloc[0]["height"])
    true = np.full((size, size), 0.04, np.float32)
    true[:, size // 2 :] = 0.08
    est = np.full((size, size), 0.05, np.float32)
    extra = [
        {"case": case, "image_id": image, "kind": "sigma", "weighting": w, "restorer": "",
         "band": 3, "height": size, "width": size, "values": a.ravel().tolist()}
        for w, a in (("oracle", true), ("dlw:nn", est))
    ]  # fmt: skip
    g = pd.concat([g, pd.DataFrame(extra)], ignore_index=True)
    strips, links = gallery_view(g, {}, {}, [case], {}, ImageStore(), 256)
    strip = next(s for s in strips if s["case"] == case and s["image_id"] == image)
    row = next(r for r in strip["rows"] if r["label"] == "noise level σ")
    cells = dict(zip(strip["columns"], row["cells"], strict=True))
    assert cells["oracle"]["caption"] == "true σ: 0 … 20.4/255"  # 0.08 · 255
    assert cells["dlw:nn"]["caption"] == "σ̂: 0 … 20.4/255"  # the same scale, not its own max
    assert cells["unweighted"] is None
    # σ figures are no restorations: no drill-down link points at them.
    assert all(r != "sigma" for (_, r, _) in links)
    others = [s for s in strips if s["case"] != case]
    assert all(r["label"] != "noise level σ" for s in others for r in s["rows"])
