"""The report stage: statistics against hand computations, escaping of hostile strings, an
offline self-contained page, byte-identical reruns and clear errors. All data here is FAKE
(tests/fixtures_report.py) and lives in temporary folders, never in reports/."""

import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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

# FAKE hand-computation table: one case, target tv, three images.
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
    # Rank by mean MPSNR within (case, target): 25 > 23.67 > 23.
    assert (d["rank"], h["rank"], u["rank"]) == (1, 2, 3)
    # SAM is 0.3 − MPSNR/200 in the fake table: lower is better, so the gain is negative.
    assert d.sam_gain == pytest.approx(-2.0 / 200.0)


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


class Page(HTMLParser):
    """Tag balance of table elements, every start tag with its attributes, and the tables."""

    TRACKED = frozenset(
        {"table", "thead", "tbody", "tr", "td", "th", "section", "figure", "script"}
    )

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.starts, self.tables = [], [], [], []
        self._tables, self._row, self._cell = [], None, None
        self.scripts, self._script = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.starts.append((tag, a))
        if tag in self.TRACKED:
            self.stack.append(tag)
        if tag == "table":
            self._tables.append({"class": a.get("class", ""), "head": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = {"tag": tag, "v": a.get("data-v"), "text": ""}
        elif tag == "script":
            self._script = {"attrs": a, "text": ""}

    def handle_endtag(self, tag):
        if tag in self.TRACKED:
            if not self.stack or self.stack[-1] != tag:
                self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            else:
                self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            t = self._tables[-1]
            (t["head"] if all(c["tag"] == "th" for c in self._row) else t["rows"]).append(self._row)
        elif tag == "table":
            self.tables.append(self._tables.pop())
        elif tag == "script":
            self.scripts.append(self._script)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._script is not None and self.stack and self.stack[-1] == "script":
            self._script["text"] += data


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


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
    # 2 cases × (2 targets × 5 weightings + 2 baselines).
    assert len(lb) == 2 * (2 * 5 + 2)
    assert set(lb["n"]) == {3} and set(lb.loc[lb.weighting_kind == "dlw", "n_seeds"]) == {2}
    m = json.loads((root / "a/metrics.json").read_text())
    assert list(m) == sorted(m) and m["synthetic"] is True
    for case, e in m["cases"].items():
        var = lb[(lb.case == case) & (lb.method == "dlw")]
        gains = var.groupby("weighting").mpsnr_gain.mean()
        achievable = gains.drop(["unweighted", "oracle"])
        assert e["best_weighting"] == achievable.idxmax()
        assert e["best_weighting_gain_db"] == pytest.approx(achievable.max(), abs=1e-4)
        assert e["best_dlw"] == "nn"  # the fake table gives dlw:nn the larger effect
        assert e["mpsnr_unweighted"] == pytest.approx(
            var[var.weighting == "unweighted"].mpsnr_mean.mean(), abs=1e-4
        )
    # The Holm family is every MPSNR comparison of the table (not per case or target).
    p = lb["mpsnr_p"].to_numpy()
    np.testing.assert_allclose(lb["mpsnr_p_holm"].to_numpy(), holm(p))
    assert np.isfinite(p).sum() == 2 * 2 * 4


def test_html_parses_and_holds_one_row_per_weighting(fake):
    _, report = fake
    page = parse(report.html)
    assert not page.errors and not page.stack, page.errors[:5]
    heads = [[c["text"] for c in t["head"][0]] if t["head"] else [] for t in page.tables]
    boards = [t for t, h in zip(page.tables, heads, strict=True) if h[:2] == ["Rank", "Weighting"]]
    assert len(boards) == 2 * 2  # one per case × variational target
    want = {"unweighted", "handcrafted", "oracle", "dlw:nn", "dlw:nn+tv"}
    for t in boards:
        assert "sortable" in t["class"]
        names = [row[1]["v"] for row in t["rows"]]
        assert sorted(names) == sorted(want)
        assert all(len(row) == len(t["head"][0]) for row in t["rows"])
    html = report.html
    assert "SYNTHETIC DATA" in html and "MPSNR ↑" in html and "SAM ↓" in html
    assert "Convergence warnings" in html and "67 %" in html  # the one unconverged fake solve


def test_page_is_self_contained_and_offline(fake):
    _, report = fake
    html = report.html
    page = parse(html)
    for tag, attrs in page.starts:
        for key in ("src", "href", "action", "poster", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, key, value)
            if key == "src" and key in attrs:
                assert value.startswith("data:image/png;base64,"), (tag, value[:40])
            if key == "href" and key in attrs:
                assert value.startswith("#"), (tag, value)
        assert tag not in ("link", "iframe", "object", "embed")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*https?://", html)
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
    assert "&quot;&gt;&lt;img src=x onerror=1&gt;" in html
    assert "image &lt;/script&gt;" in html  # the hostile image id, in the gallery heading
    page = parse(html)
    assert not page.errors and not page.stack
    for tag, attrs in page.starts:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        assert tag != "img" or attrs["src"].startswith("data:image/png;base64,")
    # The embedded JSON keeps the original strings exactly once decoded.
    data = next(s for s in page.scripts if s["attrs"].get("type") == "application/json")
    assert HOSTILE[0] in json.loads(data["text"])["cases"]
    # Hostile labels reach the charts too (matplotlib) without breaking them.
    assert html.count("data:image/png;base64,") >= 3


def test_missing_or_bad_inputs_give_clear_errors(tmp_path):
    results = fake_results(cases=("fake-x",), targets=("tv",), seeds=(0,), baselines=())
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
