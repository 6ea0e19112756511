"""``reports/index.html``: one self-contained, offline page (inline CSS, a small inline table
sorter, inline PNG images; no external resource of any kind).

Every string that comes from the data (case names and parameters, image ids, restorers,
weightings, methods, provenance, run configuration) passes through :func:`esc` (``html.escape`` with
quotes, so attributes are safe too). The one data block inside a ``<script>`` is JSON whose
``<``, ``>`` and ``&`` are written as ``\\u003c``/``\\u003e``/``\\u0026``: a ``</script>`` in the
data can never close the element, and the JSON still parses to the original strings. The page
holds no timestamp and every mapping is written in sorted order, so the same Parquet files
always give the same bytes. The layout follows the label columns of the leaderboard (weighting
``none``, ``restorer_role``, ``weighting_method``, ``restorer_method``), never a method's name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from pipeline.report.gallery import esc
from pipeline.report.leaderboard import BETTER, METRICS, NO_WEIGHTING, weighting_methods

TITLE = (
    "dlw-bench: learned weightings and restorers of several methods for variational image "
    "restoration under heterogeneous noise"
)
ARROW = {"higher": "↑", "lower": "↓"}
LABEL = {"mpsnr": "MPSNR", "mssim": "MSSIM", "sam": "SAM", "ergas": "ERGAS"}
DIGITS = {"mpsnr": 2, "mssim": 4, "sam": 4, "ergas": 2}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 margin:0 auto;max-width:1320px;padding:0 1.2em 3em;color:#1b1b1b;background:#fff}
h1{font-size:1.55em;margin:.8em 0 .3em}h2{border-bottom:2px solid #1f2937;padding-bottom:.15em;
 margin-top:2em}h3{margin:1.4em 0 .3em}h4{margin:1em 0 .2em}
.synthetic{background:#fff3cd;border:3px solid #b45309;color:#7c2d12;padding:.7em 1em;
 font-size:1.15em;margin:1em 0}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.3em 0 1.1em;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f4f6;white-space:normal;vertical-align:bottom;max-width:9em}.l{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:focus{outline:2px solid #2563eb}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.sig{font-weight:700}.warn{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
.scroll{overflow-x:auto}img.chart{max-width:100%;height:auto}
figure{display:inline-block;margin:3px;text-align:center}
figure.chart-figure{display:block;margin:.5em 0}
img.tile{width:112px;height:auto;image-rendering:pixelated}
figcaption{font-size:11px;color:#374151}
table.gallery td,table.gallery th{text-align:center;vertical-align:top}
pre{background:#f6f8fa;padding:.7em;overflow:auto;max-height:32em;font-size:12px}
code{background:#f3f4f6;padding:0 .2em}dt{font-weight:600;margin-top:.3em}
"""

# Sorts a table by the clicked column: numbers by value (data-v), other cells as text;
# empty or non-numeric values of a numeric column stay last in either direction.
SORTER_JS = """
(function () {
  function key(td) {
    var v = td.getAttribute("data-v");
    if (v === null) { v = td.textContent; }
    var f = parseFloat(v);
    return { s: v, f: (v !== "" && isFinite(f) && String(f) === v.trim()) ? f : null };
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[i]), y = key(b.cells[i]);
      if (x.f !== null || y.f !== null) {
        if (x.f === null) { return 1; }
        if (y.f === null) { return -1; }
        return asc ? x.f - y.f : y.f - x.f;
      }
      return asc ? x.s.localeCompare(y.s) : y.s.localeCompare(x.s);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
})();
"""


def script_json(obj: Any) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as JSON unicode escapes."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=True, allow_nan=False, indent=1)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fin(x) -> bool:
    try:
        return x is not None and x is not pd.NA and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt(x, digits: int = 2, sign: bool = False) -> str:
    if not fin(x):
        return "–"
    return f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"


def fmt_p(p) -> str:
    if not fin(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def sort_value(v) -> str:
    """The ``data-v`` of a cell: a string escaped, a number in full precision, NaN empty."""
    if isinstance(v, str):
        return esc(v)
    return format(float(v), ".12g") if fin(v) else ""


def td(content: str, v=None, cls: str = "", title: str = "") -> str:
    """A cell; ``content`` is HTML already escaped, ``v`` the raw sort value (escaped here)."""
    attrs = ""
    if v is not None:
        attrs += f' data-v="{sort_value(v)}"'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{esc(title)}"'
    return f"<td{attrs}>{content}</td>"


def table(headers: Iterable[tuple[str, str]], rows: Iterable[str], sortable=True) -> str:
    """``headers`` are (escaped label, css class); ``rows`` are ready ``<tr>…</tr>`` strings."""
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f'<th class="{c}">{h}</th>' if c else f"<th>{h}</th>" for h, c in headers)
    body = "\n".join(rows)
    return (
        f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _mean_ci(r, m: str) -> str:
    d = DIGITS[m]
    mean, lo, hi = r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"]
    if not fin(mean):
        return "–"
    if not fin(lo):
        return f"{fmt(mean, d)} <span class=muted>± –</span>"
    return f"{fmt(mean, d)} ± {fmt((hi - lo) / 2, d)}"


def _gain(r, m: str = "mpsnr") -> str:
    d = DIGITS[m]
    g, lo, hi = r[f"{m}_gain"], r[f"{m}_gain_ci_low"], r[f"{m}_gain_ci_high"]
    if r["reference"] and r["weighting"] == r["reference"]:
        return "reference"
    if not fin(g):
        # A restorer that takes no weighting, or one never run with the reference weighting.
        return "–"
    ci = f" ± {fmt((hi - lo) / 2, d)}" if fin(lo) else ""
    return f"{fmt(g, d, sign=True)}{ci}"


LEADER_HEADERS = [
    ("Rank", ""),
    ("Weighting", "l"),
    (f"MPSNR {ARROW[BETTER['mpsnr']]} (dB, mean ± CI)", ""),
    (f"Gain {ARROW[BETTER['mpsnr']]} (dB)", ""),
    ("p (Holm)", ""),
    (f"MSSIM {ARROW[BETTER['mssim']]}", ""),
    (f"SAM {ARROW[BETTER['sam']]} (rad)", ""),
    (f"ERGAS {ARROW[BETTER['ergas']]}", ""),
    (f"Weight AUC {ARROW['higher']}", ""),
    ("Seed SD (dB)", ""),
    ("Converged", ""),
    ("Iter.", ""),
    ("Time (s)", ""),
    ("n", ""),
]


def leader_row(r, name: str, ranked: bool = True) -> str:
    """One leaderboard row; ``name`` is the (unescaped) label of the first text column;
    ``ranked=False`` (restorers without weighting, one cell each) leaves the rank empty."""
    label = esc(name)
    title = ""
    if r["oracle_informed"]:
        label += " †"
        title = "oracle-informed: uses the true σ map and corrupted-pixel mask"
    p = r["mpsnr_p_holm"]
    sig = fin(p) and p < 0.05
    conv = r["converged_fraction"]
    n_txt = f"{int(r['n'])}" + (f" × {int(r['n_seeds'])} seeds" if r["n_seeds"] > 1 else "")
    cells = [
        td(str(r["rank"]) if ranked and fin(r["rank"]) else "–", _num(r["rank"]) if ranked else ""),
        td(label, r["weighting"], "l", title),
        td(_mean_ci(r, "mpsnr"), r["mpsnr_mean"]),
        td(_gain(r), r["mpsnr_gain"], "sig" if sig else ""),
        td(fmt_p(r["mpsnr_p_holm"]), r["mpsnr_p_holm"], "sig" if sig else "", r["mpsnr_test"]),
        td(_mean_ci(r, "mssim"), r["mssim_mean"]),
        td(_mean_ci(r, "sam"), r["sam_mean"]),
        td(_mean_ci(r, "ergas"), r["ergas_mean"]),
        td(fmt(r["weight_auc_mean"], 3), r["weight_auc_mean"]),
        td(fmt(r["mpsnr_seed_std"], 3), r["mpsnr_seed_std"]),
        td(f"{100 * conv:.0f} %", conv, "warn" if conv < 1 else ""),
        td(fmt(r["iterations_mean"], 0), r["iterations_mean"]),
        td(fmt(r["time_s_mean"], 3), r["time_s_mean"]),
        td(esc(n_txt), _num(r["n"])),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _num(x) -> float | None:
    return float(x) if fin(x) else math.nan


def leaderboard_section(lb: pd.DataFrame, cases: list[str]) -> str:
    out = []
    task_of = lb.groupby("case")["task"].first().to_dict() if "task" in lb else {}
    tasks = list(dict.fromkeys(task_of.get(c, "denoise") for c in cases))
    cases = [c for t in tasks for c in cases if task_of.get(c, "denoise") == t]  # by task
    current = None
    for case in cases:
        task = task_of.get(case, "denoise")
        if len(tasks) > 1 and task != current:
            # One section per task (forward operator), its cases below it.
            if current is not None:
                out.append("</section>")
            what = "denoising (A = I)" if task == "denoise" else f"operator {task}"
            out.append(
                f'<section class="task"><h3 id="task-{esc(_slug(task))}">Task {esc(task)}'
                f" <small class=muted>({esc(what)})</small></h3>"
            )
            current = task
        c = lb[lb["case"] == case]
        params = sorted(set(c["case_params"]))
        models = sorted(set(c["noise_model"]))
        n_img = int(c["n"].max())
        out.append(f'<section class="case"><h3 id="case-{esc(_slug(case))}">Case {esc(case)}</h3>')
        out.append(
            f"<p>Noise model <code>{esc(', '.join(models))}</code>, parameters "
            f"<code>{esc(' | '.join(params))}</code>; up to n = {n_img} test images.</p>"
        )
        var = c[c["weighting"] != NO_WEIGHTING]
        for restorer in list(dict.fromkeys(var["restorer"])):
            t = var[var["restorer"] == restorer]
            out.append(
                f"<h4>Restorer {esc(restorer)}{_restorer_note(t.iloc[0])} "
                f"<small class=muted>(case {esc(case)})</small></h4>"
            )
            rows = [leader_row(r, r["weighting"]) for _, r in t.iterrows()]
            out.append(table(LEADER_HEADERS, rows))
        plain = c[c["weighting"] == NO_WEIGHTING]
        if len(plain):
            out.append(
                "<h4>Restorers without weighting (peer baselines, learned restorers) "
                f"<small class=muted>(case {esc(case)})</small></h4>"
            )
            headers = [("Restorer (role)", "l"), *LEADER_HEADERS[2:]]
            headers.insert(0, LEADER_HEADERS[0])
            rows = [
                leader_row(r, f"{r['restorer']} ({_role(r)})", ranked=False)
                for _, r in plain.iterrows()
            ]
            out.append(table(headers, rows))
        out.append("</section>")
    if current is not None:
        out.append("</section>")
    return "\n".join(out)


def _role(r) -> str:
    """``peer``, ``learned, method M`` or ``target``: a restorer's role as the page shows it."""
    role = str(r["restorer_role"])
    return f"{role}, method {r['restorer_method']}" if r["restorer_method"] else role


def _restorer_note(r) -> str:
    """Marks a learned restorer that takes weightings in its heading (escaped)."""
    if not r["restorer_method"]:
        return ""
    return f" <small>(learned, method {esc(r['restorer_method'])})</small>"


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(s))


BUILTIN_ORDER = {"unweighted": 0, "handcrafted": 1, "oracle": 2}


def headline_columns(lb: pd.DataFrame, reference: str) -> list[tuple[str, str, str]]:
    """(metrics key, header, kind) of the headline table, kind ``label``, ``gain`` or ``mpsnr``:
    the best weighting, the best variant of each method providing weightings, the gains of the
    built-in weightings, then mean MPSNR of the reference, the built-in weightings, each method's
    best and each restorer that takes no weighting. Taken from the leaderboard's label columns,
    so every method in the data gets its columns."""
    weighted = lb[lb["weighting"] != NO_WEIGHTING]
    methods = weighting_methods(lb)
    builtin = sorted(
        {str(w) for w, m in zip(weighted["weighting"], weighted["weighting_method"], strict=True)
         if not m},
        key=lambda w: (BUILTIN_ORDER.get(w, 3), w),
    )  # fmt: skip
    plain = list(dict.fromkeys(lb.loc[lb["weighting"] == NO_WEIGHTING, "restorer"]))
    cols = [
        ("best_weighting", "Best weighting", "label"),
        ("best_weighting_gain_db", f"its gain {ARROW['higher']} (dB)", "gain"),
    ]
    for m in methods:
        cols += [
            (f"best_{m}", f"Best {m}", "label"),
            (f"best_{m}_gain_db", f"{m} gain (dB)", "gain"),
        ]
    cols += [(f"{w}_gain_db", f"{_dagger(w)} gain (dB)", "gain") for w in builtin if w != reference]
    cols.append(("mpsnr_reference", f"MPSNR {reference} (reference)", "mpsnr"))
    cols += [(f"mpsnr_{w}", _dagger(w), "mpsnr") for w in builtin if w != reference]
    cols += [(f"mpsnr_best_{m}", f"best {m}", "mpsnr") for m in methods]
    cols += [(f"mpsnr_{r}", str(r), "mpsnr") for r in plain]
    return cols


def _dagger(weighting: str) -> str:
    return f"{weighting} †" if weighting == "oracle" else weighting


def headline_section(metrics: dict, lb: pd.DataFrame, reference: str) -> str:
    cols = headline_columns(lb, reference)
    headers = [("Case", "l"), ("n images", "")]
    headers += [(esc(h), "l" if kind == "label" else "") for _, h, kind in cols]
    rows = []
    for case, e in metrics["cases"].items():
        cells = [td(esc(case), case, "l"), td(str(e["n_images"]), float(e["n_images"]))]
        for key, _, kind in cols:
            v = e.get(key)
            if kind == "label":
                cells.append(td(esc(v or "–"), v or "", "l"))
            else:
                cells.append(td(fmt(v, 2, kind == "gain"), _num(v)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return table(headers, rows)


def quality_section(q: pd.DataFrame) -> str:
    headers = [
        ("Case", "l"),
        ("Weighting", "l"),
        (f"Weight AUC {ARROW['higher']}", ""),
        (f"Oracle corr. {ARROW['higher']}", ""),
        (f"Mean MPSNR gain {ARROW['higher']} (dB)", ""),
        ("min … max over restorers", ""),
        ("Restorers with significant gain", ""),
    ]
    rows = []
    for _, r in q.iterrows():
        rng = f"{fmt(r['gain_min'], 2, True)} … {fmt(r['gain_max'], 2, True)}"
        cells = [
            td(esc(r["case"]), r["case"], "l"),
            td(esc(r["weighting"]), r["weighting"], "l"),
            td(fmt(r["weight_auc"], 3), _num(r["weight_auc"])),
            td(fmt(r["oracle_corr"], 3), _num(r["oracle_corr"])),
            td(fmt(r["mpsnr_gain"], 2, True), _num(r["mpsnr_gain"])),
            td(rng, _num(r["gain_min"])),
            td(f"{int(r['n_significant'])} / {int(r['n_restorers'])}", float(r["n_significant"])),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return table(headers, rows)


def cell_list(cells: pd.DataFrame, value: str, label: str) -> str:
    headers = [
        ("Case", "l"),
        ("Restorer", "l"),
        ("Weighting", "l"),
        (label, ""),
        ("Mean iterations", ""),
        ("Rows", ""),
    ]
    rows = []
    for _, r in cells.iterrows():
        cells_ = [
            td(esc(r["case"]), r["case"], "l"),
            td(esc(r["restorer"]), r["restorer"], "l"),
            td(esc(r["weighting"]), r["weighting"], "l"),
            td(f"{100 * r[value]:.0f} %", float(r[value]), "warn"),
            td(fmt(r["iterations_mean"], 0), _num(r["iterations_mean"])),
            td(str(int(r["n_rows"])), float(r["n_rows"])),
        ]
        rows.append("<tr>" + "".join(cells_) + "</tr>")
    return table(headers, rows)


def convergence_section(lb: pd.DataFrame) -> str:
    bad = lb[lb["converged_fraction"] < 1]
    out = []
    if bad.empty:
        out.append("<p>Every solve of every cell converged (residuals below tolerance).</p>")
    else:
        out.append(
            f'<p class="warn">{len(bad)} cell(s) hold solves that stopped at the iteration cap '
            "before the residuals fell below tolerance; their numbers are of unconverged "
            "models.</p>"
        )
        out.append(cell_list(bad, "converged_fraction", "Converged"))
    edge = lb[lb["strength_on_edge_fraction"] > 0]
    if len(edge):
        out.append(
            f"<p>{len(edge)} cell(s) chose a regularisation strength at the edge of the val "
            "grid (the best value may lie outside it):</p>"
        )
        out.append(cell_list(edge, "strength_on_edge_fraction", "At grid edge"))
    return "\n".join(out)


def _unique(df: pd.DataFrame, col: str) -> list[str]:
    if col not in df.columns:
        return []
    return sorted({str(v) for v in df[col] if str(v) not in ("", "nan", "None")})


def _packages(meta: dict) -> dict | None:
    for k in ("packages", "package_versions", "versions"):
        if isinstance(meta.get(k), dict):
            return meta[k]
    return None


def provenance_section(
    results: pd.DataFrame, lb: pd.DataFrame, meta: dict, options: dict, synthetic: bool
) -> str:
    out = ["<dl>"]

    def item(name: str, values: list[str], limit: int = 8) -> None:
        shown = ", ".join(f"<code>{esc(v)}</code>" for v in values[:limit]) or "–"
        more = f" and {len(values) - limit} more" if len(values) > limit else ""
        out.append(f"<dt>{esc(name)}</dt><dd>{shown}{more}</dd>")

    item("git commit", _unique(results, "git_commit"))
    item("params hash", _unique(results, "params_hash"))
    item("dataset hash", _unique(results, "dataset_hash"))
    runs = _unique(results, "mlflow_run_id")
    out.append(f"<dt>MLflow runs</dt><dd>{len(runs)}</dd>")
    item("weighting checkpoints", _unique(results, "weighting_checkpoint"), limit=40)
    item("restorer checkpoints", _unique(results, "restorer_checkpoint"), limit=40)
    out.append(f"<dt>schema version</dt><dd>{esc(meta.get('schema_version', '–'))}</dd>")
    label = (
        '<span class="warn">SYNTHETIC: the test images are synthetic spectral cubes</span>'
        if synthetic
        else "real data (results.synthetic is false for every row)"
    )
    out.append(f"<dt>data</dt><dd>{label}</dd>")
    conf = float(options["confidence"])
    m = {k: int(lb[f"{k}_p"].notna().sum()) for k in METRICS}
    out.append(
        f"<dt>statistics</dt><dd>{100 * conf:g} % Student t-intervals over the n images of a "
        "cell (seeds averaged per image first; NaN for n &lt; 2); gains paired over images "
        f"against <code>{esc(options['reference'])}</code> (same case and restorer; none for "
        "restorers that take no weighting); paired test <code>{esc(options['test'])}</code>; "
        "Holm correction over every comparison of one metric (family sizes "
        + ", ".join(f"{LABEL[k]} {v}" for k, v in m.items())
        + ")</dd>"
    )
    out.append("</dl>")

    out.append("<h3>n behind every interval</h3>")
    headers = [("Case", "l"), ("Cells", ""), ("Test images", ""), ("n per cell", "")]
    headers += [("Seeds (learned parts)", ""), ("Rows", "")]
    rows = []
    for case in list(dict.fromkeys(lb["case"])):
        c = lb[lb["case"] == case]
        r = results[results["case"].astype(str) == case]
        ns = sorted({int(v) for v in c["n"]})
        learned = c[(c["weighting_method"] != "") | (c["restorer_method"] != "")]
        seeds = sorted({int(v) for v in learned["n_seeds"]})
        cells = [
            td(esc(case), case, "l"),
            td(str(len(c)), float(len(c))),
            td(str(r["image_id"].nunique()), float(r["image_id"].nunique())),
            td(esc(", ".join(map(str, ns))), float(min(ns)), "warn" if len(ns) > 1 else ""),
            td(esc(", ".join(map(str, seeds)) or "–"), float(min(seeds)) if seeds else None),
            td(str(len(r)), float(len(r))),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out.append(table(headers, rows))
    out.append("<p>Each leaderboard row states its own n (images × seeds).</p>")

    pk = _packages(meta)
    if pk:
        out.append("<h3>Package versions</h3>")
        rows = [
            "<tr>" + td(esc(k), str(k), "l") + td(esc(v), str(v), "l") + "</tr>"
            for k, v in sorted(pk.items(), key=lambda kv: str(kv[0]))
        ]
        out.append(table([("Package", "l"), ("Version", "l")], rows))
    out.append("<h3>Run configuration (results.parquet metadata)</h3>")
    text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    out.append(f"<details open><summary>metadata</summary><pre>{esc(text)}</pre></details>")
    return "\n".join(out)


def chart(b64: str | None, alt: str, caption: str) -> str:
    if not b64:
        return f"<p class=muted>{esc(caption)}: nothing to draw.</p>"
    return (
        f'<figure class="chart-figure"><img class="chart" alt="{esc(alt)}" '
        f'src="data:image/png;base64,{b64}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


def page(
    *,
    lb: pd.DataFrame,
    metrics: dict,
    results: pd.DataFrame,
    meta: dict,
    quality: pd.DataFrame,
    charts: dict[str, str | None],
    gallery_html: str,
    options: dict,
) -> str:
    cases = list(dict.fromkeys(lb["case"]))
    synthetic = bool(results["synthetic"].astype(bool).any())
    n_syn = int(results["synthetic"].astype(bool).sum())
    reference = str(options["reference"])
    weighted = lb[lb["weighting"] != NO_WEIGHTING]
    restorers = list(dict.fromkeys(weighted["restorer"]))
    learned_restorers = list(dict.fromkeys(lb.loc[lb["restorer_method"] != "", "restorer"]))
    peers = list(dict.fromkeys(lb.loc[lb["restorer_role"] == "peer", "restorer"]))
    by_method: dict[str, list[str]] = {m: [] for m in weighting_methods(lb)}
    pairs = weighted[["weighting_method", "weighting_variant", "weighting"]].drop_duplicates()
    for m, v, w in sorted(pairs.itertuples(index=False)):
        if m:
            by_method[m].append(v or w)
    learned_weightings = "; ".join(f"{m}: {', '.join(ws)}" for m, ws in by_method.items())
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(TITLE)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{esc(TITLE)}</h1>",
    ]
    if synthetic:
        h.append(
            '<div class="synthetic" role="alert"><strong>SYNTHETIC DATA.</strong> '
            f"{n_syn} of {len(results)} result rows come from synthetic spectral cubes (made from "
            "RGB photographs), not from measured hyperspectral images: the numbers test the "
            "pipeline and compare methods on these cubes only; they are not comparable with "
            "published CAVE/ICVL results.</div>"
        )
    h.append(
        "<p>The benchmark compares the learned parts of several methods for variational "
        "restoration under heterogeneous noise. A <i>weighting</i> is a per-pixel weight map "
        "<i>W</i> for the data-fidelity term ½ Σ<sub>i</sub> w<sub>i</sub>(y<sub>i</sub> − "
        "x<sub>i</sub>)²: the built-in ones (unweighted w = 1, a handcrafted map, the oracle "
        "1/σ² with corrupted pixels at 0) and the learned weightings of each method "
        "(<code>method:variant</code>), trained once and then frozen. A <i>restorer</i> turns the "
        "noisy image (and a weighting, if it takes one) into the estimate: classical variational "
        "models and learned restorers. Every weighting is scored with every restorer that takes "
        "a weighting, on the test images of every noise case, each classical model's "
        "regularisation strength tuned on val per (restorer, case, weighting). Peer baselines "
        "and learned restorers that take no weighting are listed apart.</p>"
    )
    h.append(
        f"<p>{len(cases)} case(s): {esc(', '.join(cases))}. Restorers taking a weighting: "
        f"{esc(', '.join(restorers)) or '–'}; learned restorers: "
        f"{esc(', '.join(learned_restorers)) or '–'}; peer baselines: "
        f"{esc(', '.join(peers)) or '–'}; learned weightings: {esc(learned_weightings) or '–'}. "
        f"Gains are paired differences from the <code>{esc(reference)}</code> weighting. "
        f"{100 * float(options['confidence']):g} % confidence intervals over images "
        "(n in every row); † marks oracle-informed rows; ↑/↓: higher/lower is better.</p>"
    )
    h.append(
        '<nav><a href="#headline">Headline</a><a href="#leaderboard">Leaderboard</a>'
        '<a href="#transfer">Transfer</a><a href="#bars">MPSNR bars</a>'
        '<a href="#weights">Weight maps vs gain</a><a href="#gallery">Gallery</a>'
        '<a href="#convergence">Convergence</a><a href="#provenance">Provenance</a></nav>'
        "</header><main>"
    )
    h.append('<h2 id="headline">Headline (averaged over the restorers taking a weighting)</h2>')
    h.append(headline_section(metrics, lb, reference))
    h.append('<h2 id="leaderboard">Leaderboard per case and restorer</h2>')
    h.append(
        "<p>Click a column header to sort. Gain: paired mean difference of MPSNR from "
        f"<code>{esc(reference)}</code> on the same images, ± its CI half-width; p: paired test, "
        "Holm-adjusted over all MPSNR comparisons (bold: &lt; 0.05). Seed SD: spread over "
        "training seeds of the image-mean MPSNR.</p>"
    )
    h.append(leaderboard_section(lb, cases))
    h.append('<h2 id="transfer">Transfer: weighting × restorer</h2>')
    h.append(
        chart(
            charts.get("heatmap"),
            "transfer heat map",
            f"Mean MPSNR gain over {reference} (dB) of each learned weighting (rows, grouped by "
            "method; the built-in weightings below the line for scale) with each restorer "
            "(columns), per case.",
        )
    )
    h.append('<h2 id="bars">MPSNR per weighting</h2>')
    h.append(
        chart(
            charts.get("bars"),
            "MPSNR bar charts",
            "Mean MPSNR per weighting and restorer with "
            f"{100 * float(options['confidence']):g} % t-interval error bars over images "
            "(no bar when n < 2); bars start at the case's mean noisy MPSNR.",
        )
    )
    h.append('<h2 id="weights">Weight-map quality beside restoration quality</h2>')
    h.append(
        "<p>AUC of −w for detecting corrupted pixels (1: corrupted pixels get the lowest "
        "weights; 0.5: chance; undefined for cases without corrupted pixels) and correlation "
        "with the oracle map, against the MPSNR gain averaged over restorers.</p>"
    )
    h.append(quality_section(quality))
    h.append(chart(charts.get("scatter"), "AUC vs gain", "Weight-map AUC vs mean MPSNR gain."))
    h.append('<h2 id="gallery">Gallery</h2>')
    h.append(
        "<p>One band of a few test images (grey: intensity 0–1, clipped; weight maps in "
        "viridis from 0 to their 99th percentile). Captions: MPSNR of the whole cube.</p>"
    )
    h.append(gallery_html)
    h.append('<h2 id="convergence">Convergence warnings</h2>')
    h.append(convergence_section(lb))
    h.append('<h2 id="provenance">Provenance</h2>')
    h.append(provenance_section(results, lb, meta, options, synthetic))
    h.append(
        '<script type="application/json" id="headline-data">' + script_json(metrics) + "</script>"
    )
    h.append(f"</main><script>{SORTER_JS}</script></body></html>")
    return "\n".join(h) + "\n"
