"""Screenshots of ``reports/index.html`` in headless Chromium (Playwright, the system browser),
and the page's size and render time, for the README.

    ./tasks.sh run python scripts/screenshot.py [--html reports/index.html]
        [--out-dir reports/figures] [--width 1400] [--height 1000] [--runs 5]

Writes ``overview.png`` (the first screen: the overview that answers "which learned part wins
where") and ``drilldown.png`` (the detailed table an overview cell links to, after clicking it),
and prints the page's size and the median time from navigation start until the page's script
has run (``<html data-ready>``) over ``--runs`` loads. Every host name is unresolvable, so the
page cannot fetch anything; a console error or a page error fails the script (exit 1).
Needs Chromium (Debian: ``apt-get install chromium``; ``CHROMIUM=/path`` to choose one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARGS = ["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"]


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="reports/index.html")
    ap.add_argument("--out-dir", default="reports/figures")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    html = Path(args.html).resolve()
    if not html.is_file():
        print(
            f"[screenshot] {args.html}: not found (run `dvc repro report` first)", file=sys.stderr
        )
        return 1
    exe = find_chromium()
    if exe is None:
        print("[screenshot] no Chromium found: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS)
        ctx = browser.new_context(viewport={"width": args.width, "height": args.height})
        for _ in range(args.runs):
            page = ctx.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_selector("html[data-ready]", state="attached", timeout=30_000)
            times.append(page.evaluate("performance.now()") / 1000)
            last = page
        last.screenshot(path=str(out / "overview.png"))
        # The first significant gain (▲) of a learned part, as a reader would click it.
        gains = [
            a
            for sel in (
                '#overview tr:not([data-method="builtin"]) td.ov-cell.sig a.drill',
                "#overview td.ov-cell.sig a.drill",
            )
            for a in last.query_selector_all(sel)
            if "▲" in a.inner_text()
        ]
        cell = gains[0] if gains else last.query_selector("#overview td.ov-cell a.drill")
        target = cell.get_attribute("href")
        cell.click()
        last.wait_for_timeout(200)
        last.screenshot(path=str(out / "drilldown.png"))
        browser.close()
    size = html.stat().st_size
    summary = {
        "page": str(args.html),
        "page_mb": round(size / 2**20, 2),
        "render_s_median": round(statistics.median(times), 3),
        "render_s": [round(t, 3) for t in times],
        "drilldown_target": target,
        "viewport": [args.width, args.height],
        "chromium": exe,
    }
    print(json.dumps(summary, indent=1))
    for e in errors:
        print(f"[screenshot] console/page error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
