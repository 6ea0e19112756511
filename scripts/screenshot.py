"""Render ``reports/index.html`` in headless Chromium: a screenshot, and a check of the page.

    .venv/bin/python scripts/screenshot.py [--html reports/index.html]
        [--out reports/figures/leaderboard.png] [--size 1400,3000] [--allow-missing]

Two Chromium runs, both with every host name unresolvable (``--host-resolver-rules``), so a page
that tried to fetch anything from the network would log an error:

1. ``--screenshot`` with ``--enable-logging=stderr --v=0``: Chromium writes each console
   message of the page to stderr as ``INFO:CONSOLE…] "message", source: file://…``. The page
   logs nothing by design, so any console message from it (``Uncaught …`` exceptions, failed
   resource loads) is an error.
2. ``--dump-dom``: the DOM after the scripts ran must hold the page title and, when the page has
   sortable tables, the ``tabindex`` the table sorter sets on their headers (proof that the
   inline script ran to its end).

Exit status: 0 fine, 1 console errors or a failed DOM check, 2 Chromium missing (with
``--allow-missing``: a message and 0). Chromium is optional: nothing in CI needs it
(Debian: ``apt-get install chromium``). Uses the standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
COMMON = [
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    # Offline: any attempt to reach a host fails (and is logged as a console error).
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(?P<msg>.*)$")
TIMEOUT_S = 180


def find_chromium(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def console_errors(stderr: str, page_url: str) -> list[str]:
    """Console messages of the page (its own or Chromium's about it, e.g. a failed load)."""
    errors = []
    for line in stderr.splitlines():
        m = CONSOLE.search(line)
        if m and (page_url in line or "Uncaught" in line or "net::ERR" in line):
            errors.append(m.group("msg").strip())
        elif "Uncaught" in line:
            errors.append(line.strip())
    return errors


def dom_problems(dom: str) -> list[str]:
    problems = []
    if "<title>" not in dom:
        problems.append("the rendered DOM has no <title>: the page did not load")
    if 'class="sortable"' in dom and not re.search(r"<th[^>]*tabindex=\"0\"", dom):
        problems.append("sortable tables without tabindex: the inline table sorter did not run")
    return problems


def run(cmd: list[str], user_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cmd, f"--user-data-dir={user_dir}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default="reports/index.html")
    ap.add_argument("--out", default="reports/figures/leaderboard.png")
    ap.add_argument("--size", default="1400,3000", help="window width,height in pixels")
    ap.add_argument("--chromium", default=None, help="browser binary (default: search PATH)")
    ap.add_argument("--allow-missing", action="store_true", help="exit 0 without Chromium")
    args = ap.parse_args(argv)

    html = Path(args.html).resolve()
    if not html.is_file():
        print(
            f"[screenshot] {args.html}: not found (run `dvc repro report` first)", file=sys.stderr
        )
        return 1
    browser = find_chromium(args.chromium)
    if browser is None:
        print(
            "[screenshot] Chromium is not installed (looked for "
            f"{', '.join(CANDIDATES)}): no screenshot taken. Install it with "
            "`apt-get install chromium` (Debian/Ubuntu); the pipeline does not need it.",
            file=sys.stderr,
        )
        return 0 if args.allow_missing else 2
    url = html.as_uri()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = f"--window-size={args.size}"

    with tempfile.TemporaryDirectory(prefix="screenshot-") as profile:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
        os.close(fd)
        try:
            shot = run(
                [
                    browser,
                    *COMMON,
                    "--enable-logging=stderr",
                    "--v=0",
                    f"--screenshot={tmp}",
                    size,
                    url,
                ],
                profile,
            )
            if shot.returncode != 0 or os.path.getsize(tmp) == 0:
                print(shot.stderr[-3000:], file=sys.stderr)
                print(f"[screenshot] Chromium failed (exit {shot.returncode})", file=sys.stderr)
                return 1
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a figure is for everyone to read
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
        dom = run([browser, *COMMON, "--dump-dom", size, url], profile)

    errors = console_errors(shot.stderr, url)
    problems = (
        dom_problems(dom.stdout) if dom.returncode == 0 else [f"--dump-dom: {dom.returncode}"]
    )
    print(f"[screenshot] {browser}: wrote {out} ({out.stat().st_size} bytes) from {url}")
    for e in errors:
        print(f"[screenshot] console error: {e}", file=sys.stderr)
    for p in problems:
        print(f"[screenshot] DOM check failed: {p}", file=sys.stderr)
    if errors or problems:
        return 1
    print("[screenshot] no console errors; the DOM check passed (title present, sorter ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
