"""Real-browser checks of the report page (``reports/index.html``) against its DOM contract.

The page is opened from disk in the system's headless Chromium, driven by Playwright (which
never downloads a browser here: it is pointed at the executable). Everything a reader's
browser would report is recorded: console errors and warnings, uncaught exceptions, dialogs,
files that fail to load, and every request that would leave the machine — each such request
is aborted before it is sent. Then the contract is checked, first on the markup, then by
driving the page (every filter value, one combination of all four filters, two clicks on
every sortable column), and the problems come back as sentences::

    problems = check_page(path).problems
    assert not problems, "\\n".join(problems)

The contract (``tests/fixtures/browser_contract.html`` is a small page that keeps it):

* ``<select id="filter-task|filter-case|filter-restorer|filter-method">``, each with
  ``<option value="">all</option>`` first and then one option per value. On ``change`` the
  page sets ``hidden`` on every filterable element that does not match the selection and
  removes it from those that do: ``tr[data-task][data-case][data-restorer][data-method]``,
  ``td.ov-cell[data-task][data-case]`` and ``th[data-task][data-case]``. ``data-method``
  holds space-separated tokens; an attribute an element lacks never hides it. A
  ``section.detail[data-task][data-case]`` is hidden when none of its rows is visible (one
  without rows follows its own attributes).
* ``table#overview``: body rows ``tr[data-part]``, cells ``td.ov-cell`` with an
  ``a.drill[href="#…"]`` to a ``section.detail`` or a table; ``a.to-gallery[href="#g-…"]``
  points at a ``figure``; every ``a[href^="#"]`` names an existing id.
* ``table.sortable``: a click on a ``thead th`` sorts the body rows, numbers by the cell's
  ``data-v`` (empty or non-numeric values last in both directions), text otherwise, and sets
  ``aria-sort``; every header has ``tabIndex`` 0 (the sorter ran).
* Nothing from the network; ``<html data-ready="1">`` once the page's script has finished.

A column is checked for numeric order when one of its cells has a numeric ``data-v``, for
text order when every cell has a non-numeric ``data-v``, and not at all otherwise (the
contract leaves the order of such text to the page).

One Chromium serves the whole test process, each page in a fresh browser context. The sync
API of Playwright marks an asyncio loop as running in the thread that drives it (so
``asyncio.run`` would fail there for every later test), hence the browser lives in a thread of
its own and every call is a job handed to that thread.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

NOT_FOUND = "no Chromium found: install Debian's chromium package (CI does) or set CHROMIUM=/path"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# URLs that never leave the machine; every other request is a network request.
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    # A second fence behind the request routing: preconnect and DNS prefetch are not requests
    # that a route sees, and no host name resolves at all.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
READY_TIMEOUT_MS = 5_000  # after the load event; the page's script runs in a few ms
PAGE_TIMEOUT_MS = 30_000  # one navigation or one action
JOB_TIMEOUT_S = 300  # one whole check, so that a wedged browser fails the test, not the run
LIMIT = 20  # problems of one kind listed before the rest are counted


# --- finding the browser -------------------------------------------------------------------


def find_chromium() -> str | None:
    """``$CHROMIUM`` (a path or a name on PATH) if set — an explicit choice is never replaced
    by a guess — else the first of chromium, chromium-browser, google-chrome on PATH."""
    named = os.environ.get("CHROMIUM", "").strip()
    if named:
        return shutil.which(named)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_chromium() -> str:
    """The Chromium executable; skips the test where there is none, fails it under CI."""
    exe = find_chromium()
    if exe is None:
        if in_ci():
            pytest.fail(f"{NOT_FOUND} (CI is set: browser tests must run there)", pytrace=False)
        pytest.skip(NOT_FOUND)
    return exe


# --- the browser thread --------------------------------------------------------------------


class _Chromium:
    """A headless Chromium driven from a thread of its own; ``call`` runs a job there."""

    def __init__(self, executable: str):
        self.executable = executable
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        started: Future = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="chromium", daemon=True
        )
        self._thread.start()
        started.result(timeout=120)  # raises what the launch raised

    def _serve(self, started: Future) -> None:
        from playwright.sync_api import sync_playwright

        try:
            pw = sync_playwright().start()
        except BaseException as e:
            started.set_exception(e)
            return
        try:
            browser = pw.chromium.launch(
                executable_path=self.executable, headless=True, args=list(ARGS)
            )
        except BaseException as e:
            pw.stop()
            started.set_exception(e)
            return
        started.set_result(None)
        try:
            while (job := self._jobs.get()) is not None:
                fn, done = job
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(fn(browser))
                    except BaseException as e:  # pytest's skip/fail too: re-raised by call()
                        done.set_exception(e)
                if not browser.is_connected():  # crashed: end here, the next call starts anew
                    break
        finally:
            try:
                browser.close()
            finally:
                pw.stop()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[Any], Any]) -> Any:
        if not self.alive():
            raise RuntimeError("the Chromium thread has ended")
        done: Future = Future()
        self._jobs.put((fn, done))
        return done.result(timeout=JOB_TIMEOUT_S)

    def close(self) -> None:
        if self.alive():
            self._jobs.put(None)
            self._thread.join(timeout=30)


_lock = threading.Lock()
_chromium: _Chromium | None = None


def _browser() -> _Chromium:
    global _chromium
    exe = require_chromium()
    with _lock:
        if _chromium is not None and (_chromium.executable != exe or not _chromium.alive()):
            _chromium.close()
            _chromium = None
        if _chromium is None:
            _chromium = _Chromium(exe)
        return _chromium


@atexit.register
def close() -> None:
    """Stops the shared browser (also at exit); the next check starts a new one."""
    global _chromium
    with _lock:
        if _chromium is not None:
            _chromium.close()
            _chromium = None


# --- one page ------------------------------------------------------------------------------


def is_local(url: str) -> bool:
    return url.lower().startswith(LOCAL_SCHEMES)


@dataclass
class PageReport:
    """What one visit of a page found. ``problems`` is empty when the page keeps the contract;
    the other fields are the facts behind it."""

    url: str
    problems: list[str] = field(default_factory=list)
    ready: bool = False  # <html data-ready="1"> appeared
    console: list[str] = field(default_factory=list)  # "error: …" / "warning: …"
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions
    network: list[str] = field(default_factory=list)  # URLs of requests that leave the machine
    blocked: list[str] = field(default_factory=list)  # of those, aborted before being sent
    sent: list[str] = field(default_factory=list)  # of those, completed (must stay empty)
    failed: dict[str, str] = field(default_factory=dict)  # URL -> Chromium's error text
    dialogs: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)  # filter -> values after "all"
    counts: dict[str, int] = field(default_factory=dict)  # what the page holds
    checked: dict[str, int] = field(default_factory=dict)  # what was driven and verified


def _open(browser, report: PageReport):
    """A fresh context and page with every recorder attached; nothing leaves the machine."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)

    def route(route, request):
        if is_local(request.url):
            route.fallback()
        else:
            report.blocked.append(request.url)
            route.abort("blockedbyclient")

    def route_ws(ws):
        # Not connected to any server: the page's socket talks to nothing.
        report.network.append(ws.url)
        report.blocked.append(ws.url)
        ws.close()

    context.route("**/*", route)
    context.route_web_socket("**/*", route_ws)
    page = context.new_page()

    def console(msg):
        if msg.type in ("error", "warning"):
            loc = msg.location or {}
            where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc else ""
            report.console.append(f"{msg.type}: {msg.text}{where}")

    def request(req):
        if not is_local(req.url):
            report.network.append(req.url)

    def finished(req):
        if not is_local(req.url):
            report.sent.append(req.url)

    def failed(req):
        report.failed[req.url] = req.failure or "failed"

    def dialog(d):
        report.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    def page_error(e):
        name, message = getattr(e, "name", ""), getattr(e, "message", str(e))
        report.page_errors.append(f"{name}: {message}" if name else message)

    page.on("console", console)
    page.on("pageerror", page_error)
    page.on("crash", lambda _: report.page_errors.append("the page crashed"))
    page.on("request", request)
    page.on("requestfinished", finished)
    page.on("requestfailed", failed)
    page.on("dialog", dialog)
    return context, page


def _visit(browser, path: Path, ready_timeout_ms: int, fn: Callable[[Any, PageReport], Any]):
    """Opens ``path``, waits for ``data-ready``, runs ``fn(page, report)`` if the page loaded;
    returns (report, result)."""
    from playwright.sync_api import Error as PlaywrightError

    report = PageReport(url=path.as_uri())
    context, page = _open(browser, report)
    result = None
    try:
        try:
            page.goto(report.url, wait_until="load")
            loaded = True
        except PlaywrightError as e:
            report.problems.append(f"the page did not load: {e.message.splitlines()[0]}")
            loaded = False
        if loaded:
            _wait_ready(page, report, ready_timeout_ms)
            result = fn(page, report)
            page.evaluate("0")  # one more round trip: events the page sent before it are in
    finally:
        context.close()
    report.problems[:0] = _log_problems(report)
    return report, result


def _wait_ready(page, report: PageReport, timeout_ms: int) -> None:
    """Waits for ``<html data-ready="1">``; gives up after ``timeout_ms``, or after 1 s once
    an uncaught error has shown that the script broke (a broken page costs 1 s, not 5)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start = time.monotonic()
    while True:
        waited_ms = (time.monotonic() - start) * 1000
        try:
            page.wait_for_function(
                "document.documentElement.getAttribute('data-ready') === '1'",
                timeout=max(1, min(250, timeout_ms - waited_ms)),
                polling=50,
            )
            report.ready = True
            return
        except PlaywrightTimeout:
            waited_ms = (time.monotonic() - start) * 1000
            if waited_ms >= timeout_ms or (report.page_errors and waited_ms >= 1000):
                break
    after = " and an uncaught error" if report.page_errors else ""
    report.problems.append(
        f'<html data-ready="1"> was not set {waited_ms:.0f} ms after the load event{after}: '
        "the page's script did not finish"
    )


def _capped(kind: str, items: list[str]) -> list[str]:
    if len(items) <= LIMIT:
        return items
    return [*items[:LIMIT], f"… and {len(items) - LIMIT} more {kind}"]


def _log_problems(r: PageReport) -> list[str]:
    out = _capped("console messages", [f"console {m}" for m in r.console])
    out += _capped("uncaught errors", [f"uncaught error: {m}" for m in r.page_errors])
    out += [f"dialog {m}" for m in r.dialogs]
    net = []
    for url in dict.fromkeys(r.network):
        if url in r.sent:
            net.append(f"network request to {url} was SENT (it left the machine)")
        elif url in r.blocked:
            net.append(f"network request to {url} (blocked before it was sent)")
        else:
            net.append(f"network request to {url} (not routed; failed: {r.failed.get(url)})")
    out += _capped("network requests", net)
    local = [f"could not load {u}: {e}" for u, e in r.failed.items() if is_local(u)]
    return out + _capped("files", local)


def _contract(page, report: PageReport) -> None:
    static = page.evaluate(STATIC_JS, LIMIT)
    report.problems += static["problems"]
    report.counts = static["counts"]
    report.options = static["options"]
    if report.ready:  # driving a page whose script did not run only repeats that problem
        driven = page.evaluate(DRIVE_JS, LIMIT)
        report.problems += driven["problems"]
        report.checked = driven["checked"]


def check_page(path: Path | str, *, ready_timeout_ms: int = READY_TIMEOUT_MS) -> PageReport:
    """Opens ``path`` in headless Chromium and checks it against the contract (module doc).
    Skips where there is no Chromium (fails under CI)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    report, _ = _browser().call(lambda b: _visit(b, path, ready_timeout_ms, _contract))
    CHECKED.append((path.name, len(report.problems)))
    return report


# Every page check_page opened in this test process, as (file name, problems found): the
# summary line conftest.py prints at the end of the run (the browser tests' line in CI's log).
CHECKED: list[tuple[str, int]] = []


def summary_line() -> str | None:
    if not CHECKED:
        return None
    clean = sum(1 for _, n in CHECKED if n == 0)
    exe = find_chromium() or "?"
    return (
        f"browser: {len(CHECKED)} page(s) opened in headless Chromium ({exe}), {clean} passed "
        f"every check, {len(CHECKED) - clean} reported problems (deliberately broken copies)"
    )


def on_page(path: Path | str, fn: Callable[[Any], Any], *, ready_timeout_ms=READY_TIMEOUT_MS):
    """Runs ``fn(page)`` — a Playwright ``Page`` of ``path``, loaded and ready — in the browser
    thread and returns its result, so that a test can drive the page as a reader would.
    Network requests are blocked as in ``check_page``; the page must become ready."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)

    def run(page, report):
        return fn(page) if report.ready else None

    report, result = _browser().call(lambda b: _visit(b, path, ready_timeout_ms, run))
    if not report.ready:
        raise AssertionError("the page never became ready:\n" + "\n".join(report.problems))
    return result


# --- the contract, in the page -------------------------------------------------------------

# Shared by both scripts: selectors of the contract, a capped problem list, element names.
_COMMON = r"""
  const KEYS = ["task", "case", "restorer", "method"];
  const ROW = "tr[data-task][data-case][data-restorer][data-method]";
  const ITEMS = ROW + ", td.ov-cell[data-task][data-case], th[data-task][data-case]";
  const SECTION = "section.detail[data-task][data-case]";
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const text = (el) => el.textContent.trim().replace(/\s+/g, " ").slice(0, 40);
  const tokens = (k, v) => (k === "method" ? v.split(/\s+/).filter(Boolean) : [v]);
  const num = (v) =>
    v !== null && v.trim() !== "" && Number.isFinite(Number(v)) ? Number(v) : null;
  const name = (el) => {
    let s = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    for (const k of KEYS) {
      const v = el.getAttribute("data-" + k);
      if (v !== null) s += `[data-${k}="${v}"]`;
    }
    return s;
  };
  const tableName = (t) =>
    t.id ? "table#" + t.id : `sortable table ${$$("table.sortable").indexOf(t) + 1}`;
  const problems = [];
  const tally = new Map();
  const report = (kind, msg) => {
    const n = (tally.get(kind) || 0) + 1;
    tally.set(kind, n);
    if (n <= limit) problems.push(msg);
  };
  const finish = () => {
    for (const [kind, n] of tally) {
      if (n > limit) problems.push(`… and ${n - limit} more ${kind} problems`);
    }
    return problems;
  };
"""

STATIC_JS = (
    "(limit) => {"
    + _COMMON
    + r"""
  const counts = {};
  const options = {};

  const ids = new Map();
  for (const el of $$("[id]")) ids.set(el.id, (ids.get(el.id) || 0) + 1);
  for (const [id, n] of ids) if (n > 1) report("id", `id "${id}" is used by ${n} elements`);

  const items = $$(ITEMS);
  for (const k of KEYS) {
    const sel = document.getElementById("filter-" + k);
    if (!sel || sel.tagName !== "SELECT") {
      report("filter", `no <select id="filter-${k}">`);
      continue;
    }
    const opts = Array.from(sel.options);
    if (!opts.length || opts[0].value !== "" || opts[0].textContent.trim() !== "all")
      report("filter", `#filter-${k}: the first option must be <option value="">all</option>`);
    if (sel.value !== "") report("filter", `#filter-${k} starts at "${sel.value}", not at all`);
    const values = opts.slice(1).map((o) => o.value);
    options[k] = values;
    for (const v of values.filter((v, i) => v === "" || values.indexOf(v) !== i))
      report("filter", `#filter-${k}: option "${v}" is empty or repeated`);
    const present = new Set();
    for (const el of items) {
      const v = el.getAttribute("data-" + k);
      if (v !== null) for (const t of tokens(k, v)) present.add(t);
    }
    for (const v of values)
      if (v && !present.has(v)) report("filter", `#filter-${k}: option "${v}" matches nothing`);
    for (const v of present)
      if (!values.includes(v)) report("filter", `#filter-${k} has no option for "${v}"`);
  }

  const rows = $$(ROW);
  counts.rows = rows.length;
  if (!rows.length) report("row", `no filterable rows (${ROW})`);
  // Detailed rows carry all four keys; summary rows (a per-case headline) may carry fewer,
  // and a key an element lacks never hides it.
  for (const tr of $$("tr.detail-row"))
    if (!tr.matches(ROW))
      report("row", `${name(tr)} lacks some of data-task, data-case, data-restorer, data-method`);
  const sections = $$("section.detail");
  counts.sections = sections.length;
  for (const s of sections) {
    if (!s.matches(SECTION)) {
      report("section", `${name(s)} lacks data-task or data-case`);
      continue;
    }
    for (const tr of $$(ROW, s))
      for (const k of ["task", "case"])
        if (tr.getAttribute("data-" + k) !== s.getAttribute("data-" + k))
          report("section", `${name(tr)} sits in ${name(s)}`);
  }

  const ov = document.querySelector("table#overview");
  counts.overview_cells = 0;
  if (!ov) {
    report("overview", 'no <table id="overview">');
  } else {
    const body = $$(":scope > tbody > tr", ov);
    if (!body.length) report("overview", "table#overview has no body rows");
    for (const tr of body)  // group label rows ("weightings", "restorers") excepted
      if (!tr.hasAttribute("data-part") && !tr.classList.contains("group-row"))
        report("overview", `overview row "${text(tr)}" has no data-part`);
    const cells = $$("td.ov-cell", ov);
    counts.overview_cells = cells.length;
    if (!cells.length) report("overview", "table#overview has no td.ov-cell");
    for (const td of cells) {
      if (!td.matches("[data-task][data-case]"))
        report("overview", `${name(td)} lacks data-task or data-case`);
      // A part not run on that case (class na, empty) has nothing to drill into.
      const empty = td.classList.contains("na") && !text(td);
      if (!empty && !td.querySelector('a.drill[href^="#"]'))
        report("drill", `${name(td)} ("${text(td)}") has no a.drill link`);
    }
  }

  const links = $$('a[href^="#"]');
  counts.links = links.length;
  counts.drill_links = $$("a.drill").length;
  counts.gallery_links = $$("a.to-gallery").length;
  for (const a of $$("a.drill, a.to-gallery"))
    if (!(a.getAttribute("href") || "").startsWith("#"))
      report("link", `${a.className} link "${text(a)}" has href "${a.getAttribute("href")}"`);
  for (const a of links) {
    const href = a.getAttribute("href");
    let id = href.slice(1);
    try {
      id = decodeURIComponent(id);
    } catch (e) {}
    const target = id ? document.getElementById(id) : null;
    const label = `link ${href} ("${text(a)}")`;
    if (!target) report("link", `${label} points to no element with that id`);
    else if (a.matches(".drill") && !target.matches("section.detail, section.restorer, table"))
      report("link", `${label} is a drill-down to ${name(target)}, not to a section or table`);
    else if (a.matches(".to-gallery") && !(id.startsWith("g-") && target.tagName === "FIGURE"))
      report("link", `${label} is a gallery link to ${name(target)}, not to a figure#g-…`);
  }

  const tables = $$("table.sortable");
  counts.sortable_tables = tables.length;
  for (const t of tables) {
    if (!t.tHead || !t.tBodies.length) {
      report("sortable", `${tableName(t)} needs a thead and a tbody`);
      continue;
    }
    // The sorter serves the last header row; rows above it only group columns.
    const last = t.tHead.rows[t.tHead.rows.length - 1];
    for (const th of Array.from(last ? last.cells : []))
      if (th.tabIndex !== 0)
        report("sorter", `${tableName(t)}: header "${text(th)}" has no tabIndex 0 (no sorter)`);
  }

  counts.images = $$("img").length;
  for (const img of $$("img")) {
    const src = img.getAttribute("src") || "";
    if (img.complete && img.naturalWidth === 0 && src)
      report("image", `image ${src.slice(0, 80)} did not load`);
  }

  // Markup that would fetch from elsewhere, whether or not the visit made the request
  // (preconnect and DNS prefetch never show up as requests).
  const LOADS = new Set(["stylesheet", "icon", "preconnect", "dns-prefetch", "prefetch",
    "preload", "modulepreload", "manifest", "prerender", "apple-touch-icon"]);
  const remote = (u) => /^\s*([a-z][a-z0-9+.-]*:)?\/\//i.test(u) && !/^\s*file:/i.test(u);
  const XLINK = "http://www.w3.org/1999/xlink";
  for (const el of $$("[src], [srcset], [poster], object[data], link[href], image, use")) {
    if (el.tagName === "LINK" && ![...el.relList].some((r) => LOADS.has(r.toLowerCase())))
      continue;
    const urls = ["src", "poster", "data", "href"]
      .filter((a) => el.tagName !== "A" && el.hasAttribute(a))
      .map((a) => el.getAttribute(a));
    if (el.hasAttributeNS(XLINK, "href")) urls.push(el.getAttributeNS(XLINK, "href"));
    for (const c of (el.getAttribute("srcset") || "").split(","))
      urls.push(c.trim().split(/\s+/)[0]);
    for (const u of urls)
      if (u && remote(u)) report("remote", `${name(el)} loads ${u.slice(0, 80)} from elsewhere`);
  }

  return { problems: finish(), counts, options };
}"""
)

DRIVE_JS = (
    "async (limit) => {"
    + _COMMON
    + r"""
  const checked = { filter_states: 0, numeric_columns: 0, text_columns: 0 };
  // A page may apply a change a task or a frame later: look again after both. Once a second
  // look has not helped, the page is wrong rather than slow, and no more time is spent.
  let patient = true;
  const settle = async (look) => {
    let found = look();
    if (found && patient) {
      await new Promise((r) => {
        setTimeout(r, 100);
        requestAnimationFrame(() => setTimeout(r, 0));
      });
      found = look();
      patient = !found;
    }
    return found;
  };

  // Filters: every value of each filter alone, all four at once, and back to "all".
  const sels = Object.fromEntries(KEYS.map((k) => [k, document.getElementById("filter-" + k)]));
  const items = $$(ITEMS);
  const sections = $$(SECTION);
  const rowsOf = new Map(sections.map((s) => [s, $$(ROW, s)]));
  const matches = (el, want) =>
    KEYS.every((k) => {
      const have = el.getAttribute("data-" + k);
      return !want[k] || have === null || tokens(k, have).includes(want[k]);
    });
  const hides = (el, want) => {
    const rows = rowsOf.get(el);
    return rows && rows.length ? !rows.some((r) => matches(r, want)) : !matches(el, want);
  };
  const all = items.concat(sections);
  const wrong = (want) => all.filter((el) => hides(el, want) !== el.hasAttribute("hidden"));
  const none = Object.fromEntries(KEYS.map((k) => [k, ""]));
  const label = (want) =>
    KEYS.filter((k) => want[k]).map((k) => `${k}=${want[k]}`).join(", ") || "every filter at all";
  async function verify(want) {
    for (const k of KEYS) {
      const s = sels[k];
      if (s.value === want[k]) continue;
      s.value = want[k];
      s.dispatchEvent(new Event("input", { bubbles: true }));
      s.dispatchEvent(new Event("change", { bubbles: true }));
    }
    const bad = (await settle(() => (wrong(want).length ? wrong(want) : null))) || [];
    checked.filter_states += 1;
    for (const el of bad) {
      const is = el.hasAttribute("hidden") ? "hidden" : "shown";
      report("filter", `with ${label(want)}, ${name(el)} is ${is}, the contract says otherwise`);
    }
    for (const el of all)
      if (el.hasAttribute("hidden") && el.checkVisibility())
        report("hidden", `${name(el)} is hidden but still rendered (CSS overrides [hidden])`);
  }
  if (KEYS.every((k) => sels[k] && sels[k].tagName === "SELECT")) {
    await verify(none);
    for (const k of KEYS)
      for (const o of Array.from(sels[k].options).slice(1)) await verify({ ...none, [k]: o.value });
    const first = $$(ROW)[0];
    if (first) {
      const want = Object.fromEntries(
        KEYS.map((k) => [k, tokens(k, first.getAttribute("data-" + k))[0] || ""])
      );
      await verify(want);
    }
    await verify(none);
  }

  // Sorting: two clicks on every header whose column the contract orders.
  const keys = (body, i) =>
    Array.from(body.rows)
      .filter((tr) => !tr.classList.contains("group-row"))
      .map((tr) => (tr.cells[i] ? tr.cells[i].getAttribute("data-v") : null));
  // Group label rows (tr.group-row) split a body into groups sorted each on its own.
  const segments = (body, i) => {
    const out = [[]];
    for (const tr of Array.from(body.rows)) {
      if (tr.classList.contains("group-row")) out.push([]);
      else out[out.length - 1].push(tr.cells[i] ? tr.cells[i].getAttribute("data-v") : null);
    }
    return out.filter((seg) => seg.length);
  };
  const show = (vs) => vs.slice(0, 12).map((v) => (v === null ? "·" : `"${v}"`)).join(" ");
  const orderError = (th, body, i, numeric, n, before) => {
    const dir = th.getAttribute("aria-sort");
    if (dir !== "ascending" && dir !== "descending")
      return dir === null ? "sets no aria-sort" : `sets aria-sort="${dir}"`;
    if (before && dir === before) return `stays ${dir} on a second click`;
    const all = keys(body, i);
    if (all.length !== n) return `has ${all.length} rows, had ${n}`;
    const sign = dir === "ascending" ? 1 : -1;
    for (const vs of segments(body, i)) {
      const err = segmentError(vs, dir, sign, numeric);
      if (err) return err;
    }
    return null;
  };
  const segmentError = (vs, dir, sign, numeric) => {
    if (numeric) {
      const ns = vs.map(num);
      const gap = ns.indexOf(null);
      if (gap >= 0 && ns.slice(gap).some((x) => x !== null))
        return `(${dir}) puts an empty or non-numeric data-v before a number: ${show(vs)}`;
      const nums = gap < 0 ? ns : ns.slice(0, gap);
      for (let j = 1; j < nums.length; j++)
        if (sign * (nums[j] - nums[j - 1]) < 0)
          return `(${dir}) is not in numeric order of data-v: ${show(vs)}`;
    } else {
      for (let j = 1; j < vs.length; j++)
        if (sign * vs[j - 1].localeCompare(vs[j]) > 0)
          return `(${dir}) is not in text order of data-v: ${show(vs)}`;
    }
    return null;
  };
  for (const t of $$("table.sortable")) {
    if (!t.tHead || !t.tHead.rows.length || !t.tBodies.length) continue;
    const body = t.tBodies[0];
    const head = t.tHead.rows[t.tHead.rows.length - 1];
    for (const th of Array.from(head.cells)) {
      const i = th.cellIndex;
      const vs = keys(body, i);
      const numeric = vs.some((v) => num(v) !== null);
      if (!vs.length || (!numeric && vs.some((v) => v === null))) continue;
      let before = null;
      for (let click = 0; click < 2; click++) {
        th.click();
        const err = await settle(() => orderError(th, body, i, numeric, vs.length, before));
        if (err) {
          report("sort", `${tableName(t)}, column "${text(th)}" ${err}`);
          break;
        }
        before = th.getAttribute("aria-sort");
      }
      checked[numeric ? "numeric_columns" : "text_columns"] += 1;
    }
  }

  return { problems: finish(), checked };
}"""
)
