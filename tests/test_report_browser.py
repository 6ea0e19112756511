"""The report page in a real browser (headless Chromium through Playwright, tests/browser.py).

Driven here on tests/fixtures/browser_contract.html, a small page that keeps the page's DOM
contract: the checks pass on it, the filters and the sorter behave as specified when a reader
clicks, every in-page link lands, nothing reaches the network, and copies broken on purpose
(a syntax error, a dangling link, a remote image, a wrong filter, …) are each reported."""

import asyncio
import http.server
import threading
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
from browser import check_page, on_page, require_chromium

FIXTURE = Path(__file__).parent / "fixtures" / "browser_contract.html"
KEYS = ("task", "case", "restorer", "method")

# Every element the filters touch, with what a reader sees of it.
STATE_JS = """() => Array.from(document.querySelectorAll(
    "tr[data-task], td.ov-cell, th[data-task], section.detail")).map((el) => ({
  kind: el.tagName === "TR" ? "row" : el.tagName === "SECTION" ? "section" : "column",
  id: el.id,
  label: el.tagName === "TR" && el.cells[0] ? el.cells[0].getAttribute("data-v") : null,
  section: el.closest("section.detail") ? el.closest("section.detail").id : null,
  task: el.getAttribute("data-task"),
  case: el.getAttribute("data-case"),
  restorer: el.getAttribute("data-restorer"),
  method: el.getAttribute("data-method"),
  visible: !el.closest("[hidden]"),
  rendered: el.checkVisibility(),
}))"""

# Rows of the fixture each filter value leaves visible (11 rows; "dlw toy" counts for both).
VISIBLE_ROWS = {
    ("task", "denoise"): 8,
    ("task", "inpaint"): 3,
    ("case", "noniid"): 8,
    ("case", "impulse"): 3,
    ("restorer", "tv"): 7,
    ("restorer", "nn"): 2,
    ("restorer", "bm4d"): 2,
    ("method", "dlw"): 4,
    ("method", "toy"): 4,
    ("method", "builtin"): 4,
}


def has(value, key, wanted):
    return wanted in value.split() if key == "method" else value == wanted


@pytest.fixture(scope="module")
def contract():
    return check_page(FIXTURE)


def broken(tmp_path, old: str, new: str, name: str = "broken.html") -> Path:
    """A copy of the fixture with the first ``old`` replaced by ``new``."""
    html = FIXTURE.read_text(encoding="utf-8")
    assert old in html, old
    path = tmp_path / name
    path.write_text(html.replace(old, new, 1), encoding="utf-8")
    return path


# --- the contract page passes, quietly and offline -----------------------------------------


def test_contract_page_passes_every_check(contract):
    assert contract.problems == []
    assert contract.ready
    assert contract.options == {
        "task": ["denoise", "inpaint"],
        "case": ["noniid", "impulse"],
        "restorer": ["tv", "nn", "bm4d"],
        "method": ["dlw", "toy", "builtin"],
    }
    assert contract.counts == {
        "rows": 11,
        "sections": 3,
        "overview_cells": 9,
        "links": 14,
        "drill_links": 9,
        "gallery_links": 2,
        "sortable_tables": 3,
        "images": 2,
    }
    # "all", each of the 10 values alone, all four filters at once, "all" again; every header
    # of the three tables clicked twice (numeric: MPSNR, Gain, p, n + 2 x (MPSNR, n)).
    assert contract.checked == {"filter_states": 13, "numeric_columns": 8, "text_columns": 6}


def test_contract_page_is_silent_and_offline(contract):
    assert contract.console == []
    assert contract.page_errors == []
    assert contract.dialogs == []
    assert contract.network == [] and contract.blocked == [] and contract.sent == []
    assert contract.failed == {}


# --- filters, as a reader selects them -----------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_filter_leaves_only_matching_rows(key):
    def walk(page):
        values = page.eval_on_selector_all(f"#filter-{key} option", "os => os.map(o => o.value)")
        states = {}
        for value in [*values[1:], ""]:
            page.select_option(f"#filter-{key}", value)
            states[value] = page.evaluate(STATE_JS)
        return values, states

    values, states = on_page(FIXTURE, walk)
    assert values[0] == ""
    assert len(values) > 2
    for value in values[1:]:
        els = states[value]
        rows = [e for e in els if e["kind"] == "row"]
        shown = [r for r in rows if r["visible"]]
        assert len(shown) == VISIBLE_ROWS[key, value]
        assert all(has(r[key], key, value) for r in shown)
        others = [r for r in rows if not has(r[key], key, value)]
        assert others
        assert not any(r["visible"] for r in others)
        # Hidden is hidden on screen too, not only an attribute.
        assert all(e["rendered"] == e["visible"] for e in els if e["kind"] != "section")
        # Overview columns carry task and case only: the other two filters leave them alone.
        columns = [e for e in els if e["kind"] == "column"]
        assert len(columns) == 12
        if key in ("task", "case"):
            assert all(c["visible"] == (c[key] == value) for c in columns)
            assert any(c["visible"] for c in columns)
        else:
            assert all(c["visible"] for c in columns)
        # A section is shown exactly when one of its rows is.
        for s in (e for e in els if e["kind"] == "section"):
            assert s["visible"] == any(r["section"] == s["id"] for r in shown)
    assert all(e["visible"] and e["rendered"] for e in states[""])


def test_method_filter_reads_tokens():
    def pick(page):
        out = {}
        for method in ("dlw", "toy"):
            page.select_option("#filter-method", method)
            out[method] = {e["label"] for e in page.evaluate(STATE_JS) if e["visible"]}
        return out

    seen = on_page(FIXTURE, pick)
    assert "dlw+toy:nn" in seen["dlw"]
    assert "dlw+toy:nn" in seen["toy"]
    assert "toy:tv" not in seen["dlw"]
    assert "dlw:tv" not in seen["toy"]


def test_filters_combine():
    def pick(page):
        page.select_option("#filter-task", "denoise")
        page.select_option("#filter-method", "toy")
        first = page.evaluate(STATE_JS)
        page.select_option("#filter-restorer", "nn")
        second = page.evaluate(STATE_JS)
        for key in KEYS:
            page.select_option(f"#filter-{key}", "")
        return first, second, page.evaluate(STATE_JS)

    first, second, reset = on_page(FIXTURE, pick)

    def rows(state):
        return sorted(e["label"] for e in state if e["kind"] == "row" and e["visible"])

    def sections(state):
        return sorted(e["id"] for e in state if e["kind"] == "section" and e["visible"])

    assert rows(first) == ["dlw+toy:nn", "toy:nn", "toy:tv"]
    assert sections(first) == ["d-denoise-impulse", "d-denoise-noniid"]
    assert rows(second) == ["dlw+toy:nn", "toy:nn"]
    assert len(rows(reset)) == 11
    assert all(e["visible"] for e in reset)


# --- sorting, as a reader clicks -----------------------------------------------------------


def numbers_then_rest(values: list[str], descending: bool) -> bool:
    """Numbers (of data-v) in order, then every empty or non-numeric value."""
    nums = []
    for i, v in enumerate(values):
        try:
            nums.append(float(v))
        except ValueError:
            rest = values[i:]
            break
    else:
        rest = []
    if any(_is_number(v) for v in rest):
        return False
    return nums == sorted(nums, reverse=descending)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def test_click_sorts_numeric_columns_by_data_v():
    def click_all(page):
        table = page.locator("#t-denoise-noniid")
        headers = table.locator("thead th")
        out = {}
        for j in range(headers.count()):
            th = headers.nth(j)
            clicks = []
            for _ in range(2):
                th.click()
                order = table.locator("tbody tr").evaluate_all(
                    f"rs => rs.filter(r => !r.closest('[hidden]'))"
                    f".map(r => r.cells[{j}].getAttribute('data-v'))"
                )
                clicks.append((th.get_attribute("aria-sort"), order))
            out[th.inner_text().strip()] = clicks
        tab_index = headers.evaluate_all("hs => hs.map(h => h.tabIndex)")
        # Sorting a filtered table orders what is left.
        page.select_option("#filter-restorer", "tv")
        table.locator("thead th", has_text="MPSNR").click()
        filtered = table.locator("tbody tr:not([hidden])").evaluate_all(
            "rs => rs.map(r => r.cells[2].getAttribute('data-v'))"
        )
        return out, tab_index, filtered

    clicks, tab_index, filtered = on_page(FIXTURE, click_all)
    assert tab_index == [0] * 6
    numeric = ["MPSNR (dB)", "Gain (dB)", "p (Holm)", "n"]
    for name in numeric:
        (first, up), (second, down) = clicks[name]
        assert (first, second) == ("ascending", "descending")
        assert numbers_then_rest(up, descending=False), (name, up)
        assert numbers_then_rest(down, descending=True), (name, down)
    # As numbers, not strings: 1e-05 < 0.003 and 9 < 12 < 100; empty values last both ways.
    assert clicks["p (Holm)"][0][1] == ["1e-05", "0.003", "", "", ""]
    assert clicks["p (Holm)"][1][1] == ["0.003", "1e-05", "", "", ""]
    assert clicks["n"][0][1] == ["9", "12", "12", "12", "100"]
    assert clicks["Gain (dB)"][1][1] == ["1.05", "0.2", "-0.5", "", ""]
    assert clicks["MPSNR (dB)"][0][1] == ["28.1", "29.87", "30.37", "30.9", "31.42"]
    # Text columns sort as text, by the browser's collation (":" before "+", unlike code points).
    up = ["bm4d", "dlw:tv", "dlw+toy:nn", "toy:tv", "unweighted:tv"]
    assert clicks["Weighting"] == [("ascending", up), ("descending", up[::-1])]
    assert filtered == ["29.87", "30.37", "31.42"]


# --- in-page links -------------------------------------------------------------------------


def test_every_in_page_link_lands():
    def follow(page):
        links = page.eval_on_selector_all(
            'a[href^="#"]',
            """as => as.map(a => {
                 const t = document.getElementById(a.getAttribute("href").slice(1));
                 return [a.getAttribute("href"), a.className, t ? t.tagName : null];
               })""",
        )
        landed = {}
        for href in ("#t-inpaint-noniid", "#g-inpaint-noniid-dlw"):
            page.locator(f'a[href="{href}"]').first.click()
            landed[href] = page.evaluate(
                """(id) => {
                     const r = document.getElementById(id).getBoundingClientRect();
                     return [location.hash, r.top >= 0 && r.top < innerHeight];
                   }""",
                href[1:],
            )
        return links, landed

    links, landed = on_page(FIXTURE, follow)
    assert len(links) == 14
    assert all(tag is not None for _, _, tag in links), links
    assert {tag for _, cls, tag in links if cls == "drill"} <= {"SECTION", "TABLE"}
    assert {tag for _, cls, tag in links if cls == "to-gallery"} == {"FIGURE"}
    assert landed == {
        "#t-inpaint-noniid": ["#t-inpaint-noniid", True],
        "#g-inpaint-noniid-dlw": ["#g-inpaint-noniid-dlw", True],
    }


# --- broken pages are reported -------------------------------------------------------------


def test_syntax_error_is_reported(tmp_path):
    page = broken(tmp_path, '"use strict";', '"use strict"; var = ;')
    report = check_page(page)
    assert not report.ready
    assert any("SyntaxError" in e for e in report.page_errors), report.page_errors
    assert any(p.startswith("uncaught error: SyntaxError") for p in report.problems)
    assert any('data-ready="1"> was not set' in p for p in report.problems)
    assert any("has no tabIndex 0" in p for p in report.problems)


def test_dangling_drill_link_is_reported(tmp_path):
    page = broken(
        tmp_path,
        '<a class="drill" href="#d-denoise-impulse">27.90</a>',
        '<a class="drill" href="#d-missing">27.90</a>',
    )
    report = check_page(page)
    assert report.problems == ['link #d-missing ("27.90") points to no element with that id']


def test_remote_image_is_blocked_and_reported(tmp_path):
    url = "https://example.invalid/x.png"
    page = broken(tmp_path, "</body>", f'<img src="{url}" alt=""></body>')
    report = check_page(page)
    assert report.network == [url]
    assert report.blocked == [url]
    assert report.sent == []
    assert list(report.failed) == [url]
    assert report.failed[url].startswith("net::ERR_BLOCKED_BY_CLIENT")
    assert f"network request to {url} (blocked before it was sent)" in report.problems
    assert any(f"loads {url} from elsewhere" in p for p in report.problems)


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_blocked_requests_never_reach_a_server(tmp_path):
    """A server that counts requests: it answers Python, and hears nothing from the page's
    image, fetch and WebSocket."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        _Counter.hits.clear()
        urllib.request.urlopen(f"{base}/control", timeout=5).close()
        assert _Counter.hits == ["/control"]
        _Counter.hits.clear()
        ws = base.replace("http:", "ws:") + "/socket"
        page = broken(
            tmp_path,
            "</body>",
            f'<img src="{base}/pixel.png" alt=""><script>'
            f'fetch("{base}/beacon").catch(() => {{}}); new WebSocket("{ws}");'
            "</script></body>",
        )
        report = check_page(page)
    finally:
        server.shutdown()
        server.server_close()
    assert _Counter.hits == []
    assert set(report.network) == {f"{base}/pixel.png", f"{base}/beacon", ws}
    assert set(report.blocked) == set(report.network)
    assert report.sent == []


# Faults of the page's own logic or style that only a browser sees; each with a sentence
# that the report must contain.
FAULTS = {
    "console output": (
        '"use strict";',
        '"use strict"; console.error("boom"); console.warn("careful");',
        "console error: boom",
    ),
    "method filter compares whole strings": (
        "have.split(/\\s+/).indexOf(want[k]) >= 0",
        "have === want[k]",
        'with method=dlw, tr[data-task="denoise"][data-case="noniid"][data-restorer="nn"]'
        '[data-method="dlw toy"] is hidden, the contract says otherwise',
    ),
    "sections never hidden": (
        "sec.hidden = rows.length",
        "sec.hidden = false && rows.length",
        'with restorer=nn, section#d-inpaint-noniid[data-task="inpaint"][data-case="noniid"] '
        "is shown, the contract says otherwise",
    ),
    "CSS overrides [hidden]": (
        ".l{text-align:left}",
        ".l{text-align:left}tr{display:table-row}",
        "is hidden but still rendered (CSS overrides [hidden])",
    ),
    "numbers sorted as strings": (
        "return asc ? x.n - y.n : y.n - x.n;",
        "return asc ? x.s.localeCompare(y.s) : y.s.localeCompare(x.s);",
        'table#t-denoise-noniid, column "p (Holm)" (ascending) is not in numeric order of data-v',
    ),
    "no aria-sort": (
        'th.setAttribute("aria-sort", asc ? "ascending" : "descending");',
        "",
        'table#t-denoise-noniid, column "Weighting" sets no aria-sort',
    ),
    "missing image file": (
        "</body>",
        '<img src="missing.png" alt=""></body>',
        "image missing.png did not load",
    ),
    "option without rows": (
        '<option value="builtin">builtin</option>',
        '<option value="builtin">builtin</option><option value="other">other</option>',
        '#filter-method: option "other" matches nothing',
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_are_reported(tmp_path, fault):
    old, new, expected = FAULTS[fault]
    problems = check_page(broken(tmp_path, old, new)).problems
    assert any(expected in p for p in problems), problems


def test_missing_file_in_page_is_reported_with_its_url(tmp_path):
    report = check_page(broken(tmp_path, "</body>", '<img src="missing.png" alt=""></body>'))
    url = (tmp_path / "missing.png").as_uri()
    assert report.failed == {url: "net::ERR_FILE_NOT_FOUND"}
    assert f"could not load {url}: net::ERR_FILE_NOT_FOUND" in report.problems


def test_browser_leaves_asyncio_to_the_other_tests(contract):
    """The browser runs in a thread of its own: Playwright's sync API marks an asyncio loop as
    running in the thread that drives it, which would break every later asyncio.run."""

    async def answer():
        return 42

    assert contract.ready
    assert asyncio.run(answer()) == 42


# --- no browser: skipped on a workstation, a failure under CI ------------------------------


def test_missing_chromium_skips_outside_ci(monkeypatch):
    monkeypatch.setenv("CHROMIUM", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium found"):
        require_chromium()


def test_missing_chromium_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CHROMIUM", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium()


# --- the real page, rendered from the templates ---------------------------------------------


def render_fake(folder: Path, templates: Path | None = None) -> Path:
    """The report of the FAKE results (tests/fixtures_report.py) written to ``folder``."""
    from fixtures_report import FAKE_META, fake_gallery, fake_results

    from pipeline.report.build import build_report, write_report

    results = fake_results()
    report = build_report(results, fake_gallery(results), FAKE_META, templates=templates)
    write_report(report, folder)
    return folder / "index.html"


@pytest.fixture(scope="module")
def real_page(tmp_path_factory):
    return render_fake(tmp_path_factory.mktemp("real-page"))


def test_real_page_passes_every_check(real_page):
    report = check_page(real_page)
    assert report.problems == [], "\n".join(report.problems)
    assert report.ready and report.console == [] and report.network == []
    # 2 cases × (3 restorers × 6 weightings + 3 restorers without weighting).
    assert report.counts["rows"] >= 2 * (3 * 6 + 3)
    assert report.options["task"] == ["denoise"] and len(report.options["case"]) == 2
    assert report.checked["filter_states"] >= 10 and report.checked["numeric_columns"] > 20


def test_real_page_filter_and_drill_down(real_page):
    """Filtering to one case leaves only its detailed rows and overview columns; a drill-down
    link of the overview lands on a visible table of that case."""

    def drive(page):
        case = page.eval_on_selector_all("#filter-case option", "os => os[2].value")
        page.select_option("#filter-case", case)
        shown = page.eval_on_selector_all(
            "tr.detail-row", "rs => rs.filter(r => !r.closest('[hidden]')).map(r => r.dataset.case)"
        )
        cols = page.eval_on_selector_all(
            "#overview td.ov-cell",
            "cs => cs.filter(c => !c.closest('[hidden]')).map(c => c.dataset.case)",
        )
        link = page.eval_on_selector_all(
            f'#overview td.ov-cell[data-case="{case}"] a.drill', "as => as[0].getAttribute('href')"
        )
        page.click(f'#overview td.ov-cell[data-case="{case}"] a.drill')
        target = page.evaluate(
            "id => { const t = document.getElementById(id); const r = t.getBoundingClientRect();"
            " return {hidden: !!t.closest('[hidden]'), top: r.top,"
            " case: t.closest('section.detail').dataset.case}; }",
            link[1:],
        )
        return case, shown, cols, target

    case, shown, cols, target = on_page(real_page, drive)
    assert shown and set(shown) == {case}
    assert cols and set(cols) == {case}
    # It lands at the top of the window, just below the sticky filter bar (scroll margin).
    assert not target["hidden"] and target["case"] == case and 0 <= target["top"] < 100


@pytest.mark.parametrize(
    ("template", "old", "new", "expect"),
    [
        # A syntax error in the page's script: nothing runs, the page never becomes ready.
        ("page.js", "var asc =", "var asc = =", "SyntaxError"),
        # A detailed section without its id: the overview's drill-down links dangle.
        ("details.html.j2", 'id="{{ c.id }}"', "", "points to no element"),
        # A filter that never hides anything.
        ("page.js", 'el.setAttribute("hidden", "");', ";", "filter"),
    ],
    ids=["script-syntax-error", "dangling-drill-down", "filter-does-nothing"],
)
def test_broken_template_fails_the_check(tmp_path, template, old, new, expect):
    from pipeline.report.render import TEMPLATES

    broken_dir = tmp_path / "templates"
    broken_dir.mkdir()
    for f in TEMPLATES.iterdir():
        (broken_dir / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    text = (broken_dir / template).read_text(encoding="utf-8")
    assert old in text, old
    (broken_dir / template).write_text(text.replace(old, new, 1), encoding="utf-8")
    report = check_page(render_fake(tmp_path / "out", broken_dir))
    assert report.problems, f"the broken {template} passed every check"
    assert any(expect in p for p in report.problems), report.problems[:5]
