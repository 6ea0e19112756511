"""The page's context: every table and figure of ``reports/index.html`` prepared as view models
(:mod:`pipeline.report.view`) from the leaderboard, the overview and the results; the templates
only lay them out. Pure functions: the same inputs give the same context.

The layout follows the label columns of the leaderboard (weighting ``none``, ``restorer_role``,
``weighting_method``, ``restorer_method``), never a method's name.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from pipeline.report.leaderboard import BETTER, METRICS, NO_WEIGHTING, weighting_methods
from pipeline.report.view import (
    ARROW,
    DIGITS,
    LABEL,
    Cell,
    Column,
    Row,
    Table,
    case_anchor,
    fin,
    fmt,
    fmt_p,
    method_tokens,
    num,
    number,
    slug,
    sort_value,
    task_anchor,
    text,
)

TITLE = (
    "dlw-bench: learned weightings and restorers of several methods for variational image "
    "restoration under heterogeneous noise"
)
BUILTIN_ORDER = {"unweighted": 0, "handcrafted": 1, "oracle": 2}
DENOISE = "denoise"


def task_of(lb: pd.DataFrame) -> dict[str, str]:
    """case → task (``denoise`` for tables written before tasks had operators)."""
    if "task" not in lb:
        return {str(c): DENOISE for c in lb["case"]}
    return {str(k): str(v) for k, v in lb.groupby("case", sort=False)["task"].first().items()}


def ordered_cases(lb: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """[(task, [cases])] in first-seen order, denoising first."""
    tasks = task_of(lb)
    cases = list(dict.fromkeys(lb["case"].astype(str)))
    order = list(dict.fromkeys(tasks[c] for c in cases))
    if DENOISE in order:
        order = [DENOISE] + [t for t in order if t != DENOISE]
    return [(t, [c for c in cases if tasks[c] == t]) for t in order]


def task_title(task: str) -> str:
    return "denoising (A = I)" if task == DENOISE else f"operator {task}"


# ---------------------------------------------------------------- detailed tables (drill-down)


def _mean_ci(r, m: str) -> Cell:
    d = DIGITS[m]
    mean, lo, hi = r[f"{m}_mean"], r[f"{m}_ci_low"], r[f"{m}_ci_high"]
    if not fin(mean):
        return Cell("–", v="")
    if not fin(lo):
        return Cell(fmt(mean, d), v=sort_value(num(mean)), sub="± –")
    return Cell(f"{fmt(mean, d)} ± {fmt((hi - lo) / 2, d)}", v=sort_value(num(mean)))


def _gain(r, sig: bool) -> Cell:
    g, lo, hi = r["mpsnr_gain"], r["mpsnr_gain_ci_low"], r["mpsnr_gain_ci_high"]
    if r["reference"] and r["weighting"] == r["reference"]:
        return Cell("reference", v=sort_value(num(g)))
    if not fin(g):
        # A restorer that takes no weighting, or one never run with the reference weighting.
        return Cell("–", v="")
    ci = f" ± {fmt((hi - lo) / 2, 2)}" if fin(lo) else ""
    return Cell(f"{fmt(g, 2, sign=True)}{ci}", v=sort_value(num(g)), cls="sig" if sig else "")


LEADER_COLUMNS = [
    Column("Rank"),
    Column("Weighting", "l"),
    Column(f"MPSNR {ARROW[BETTER['mpsnr']]} (dB, mean ± CI)"),
    Column(f"Gain {ARROW[BETTER['mpsnr']]} (dB)"),
    Column("p (Holm)"),
    Column(f"MSSIM {ARROW[BETTER['mssim']]}"),
    Column(f"SAM {ARROW[BETTER['sam']]} (rad)"),
    Column(f"ERGAS {ARROW[BETTER['ergas']]}"),
    Column(f"Weight AUC {ARROW['higher']}"),
    Column("Seed SD (dB)"),
    Column("Converged"),
    Column("Iter."),
    Column("Time (s)"),
    Column("n"),
    Column("Images", "l", "the restorations of this row in the gallery"),
]


def leader_row(r, name: str, tasks: dict[str, str], gallery: dict, ranked: bool = True) -> Row:
    """One leaderboard row; ``name`` labels the first text column; ``ranked=False`` (restorers
    without weighting, one cell each) leaves the rank empty. ``gallery`` maps (case, restorer,
    weighting) to the gallery figure ids of that cell."""
    title = ""
    label = name
    if r["oracle_informed"]:
        label += " †"
        title = "oracle-informed: uses the true σ map and corrupted-pixel mask"
    p = r["mpsnr_p_holm"]
    sig = fin(p) and p < 0.05
    conv = r["converged_fraction"]
    n_txt = f"{int(r['n'])}" + (f" × {int(r['n_seeds'])} seeds" if r["n_seeds"] > 1 else "")
    rank = r["rank"]
    key = (str(r["case"]), str(r["restorer"]), str(r["weighting"]))
    links = gallery.get(key, [])
    cells = [
        Cell(str(rank) if ranked and fin(rank) else "–", v=sort_value(num(rank)) if ranked else ""),
        Cell(label, v=str(r["weighting"]), cls="l", title=title),
        _mean_ci(r, "mpsnr"),
        _gain(r, sig),
        Cell(fmt_p(p), v=sort_value(num(p)), cls="sig" if sig else "", title=r["mpsnr_test"]),
        _mean_ci(r, "mssim"),
        _mean_ci(r, "sam"),
        _mean_ci(r, "ergas"),
        number(r["weight_auc_mean"], 3),
        number(r["mpsnr_seed_std"], 3),
        Cell(f"{100 * conv:.0f} %", v=sort_value(conv), cls="warn" if conv < 1 else ""),
        number(r["iterations_mean"], 0),
        number(r["time_s_mean"], 3),
        Cell(n_txt, v=sort_value(num(r["n"]))),
        Cell(
            f"{len(links)} image(s)" if links else "–",
            v=str(len(links)),
            cls="l",
            href=f"#{links[0]}" if links else "",
            link_cls="to-gallery",
        ),
    ]
    attrs = {
        "task": tasks.get(str(r["case"]), DENOISE),
        "case": str(r["case"]),
        "restorer": str(r["restorer"]),
        "method": method_tokens(
            str(r["weighting"]), str(r["weighting_method"]), str(r["restorer_method"])
        ),
    }
    return Row(cells, attrs, cls="detail-row")


def _role(r) -> str:
    """``peer``, ``learned, method M`` or ``target``: a restorer's role as the page shows it."""
    role = str(r["restorer_role"])
    return f"{role}, method {r['restorer_method']}" if r["restorer_method"] else role


def detail_sections(lb: pd.DataFrame, gallery: dict) -> list[dict[str, Any]]:
    """Per task, per case: one table per restorer taking a weighting (rows: weightings) and one
    of the restorers taking none; the overview's cells link here."""
    tasks = task_of(lb)
    out = []
    for task, cases in ordered_cases(lb):
        entries = []
        for case in cases:
            c = lb[lb["case"] == case]
            var = c[c["weighting"] != NO_WEIGHTING]
            tables = []
            for restorer in list(dict.fromkeys(var["restorer"])):
                t = var[var["restorer"] == restorer]
                first = t.iloc[0]
                rows = [leader_row(r, r["weighting"], tasks, gallery) for _, r in t.iterrows()]
                tables.append(
                    {
                        "id": f"{case_anchor(case)}--{slug(restorer)}",
                        "restorer": restorer,
                        "method": str(first["restorer_method"]),
                        "table": Table(LEADER_COLUMNS, rows),
                    }
                )
            plain = c[c["weighting"] == NO_WEIGHTING]
            plain_table = None
            if len(plain):
                columns = [LEADER_COLUMNS[0], Column("Restorer (role)", "l"), *LEADER_COLUMNS[2:]]
                rows = [
                    leader_row(r, f"{r['restorer']} ({_role(r)})", tasks, gallery, ranked=False)
                    for _, r in plain.iterrows()
                ]
                plain_table = Table(columns, rows)
            entries.append(
                {
                    "id": case_anchor(case),
                    "case": case,
                    "task": task,
                    "noise_models": ", ".join(sorted(set(c["noise_model"]))),
                    "params": " | ".join(sorted(set(c["case_params"]))),
                    "n_images": int(c["n"].max()),
                    "tables": tables,
                    "plain": plain_table,
                    "plain_id": f"{case_anchor(case)}-restorers",
                }
            )
        out.append(
            {"task": task, "id": task_anchor(task), "title": task_title(task), "cases": entries}
        )
    return out


# ---------------------------------------------------------------- headline per case


def _dagger(weighting: str) -> str:
    return f"{weighting} †" if weighting == "oracle" else weighting


def headline_columns(lb: pd.DataFrame, reference: str) -> list[tuple[str, str, str]]:
    """(metrics key, header, kind) of the per-case headline table, kind ``label``, ``gain`` or
    ``mpsnr``: the best weighting, the best variant of each method providing weightings, the
    gains of the built-in weightings, then mean MPSNR of the reference, the built-in weightings,
    each method's best and each restorer that takes no weighting (from the label columns)."""
    weighted = lb[lb["weighting"] != NO_WEIGHTING]
    methods = weighting_methods(lb)
    builtin = sorted(
        {
            str(w)
            for w, m in zip(weighted["weighting"], weighted["weighting_method"], strict=True)
            if not m
        },
        key=lambda w: (BUILTIN_ORDER.get(w, 3), w),
    )
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


def headline_frame(metrics: dict, lb: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The per-case headline (``metrics.json``) as a tidy table: one row per case."""
    cols = headline_columns(lb, reference)
    tasks = task_of(lb)
    records = []
    for case, e in metrics["cases"].items():
        rec = {"task": tasks.get(case, DENOISE), "case": case, "n_images": e["n_images"]}
        rec.update({key: e.get(key) for key, _, _ in cols})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def headline_table(metrics: dict, lb: pd.DataFrame, reference: str) -> Table:
    cols = headline_columns(lb, reference)
    tasks = task_of(lb)
    columns = [Column("Case", "l"), Column("n images")]
    columns += [Column(h, "l" if kind == "label" else "") for _, h, kind in cols]
    rows = []
    for case, e in metrics["cases"].items():
        cells = [
            text(case, href=f"#{case_anchor(case)}", link_cls="drill"),
            number(e["n_images"], 0),
        ]
        for key, _, kind in cols:
            v = e.get(key)
            if kind == "label":
                cells.append(Cell(v or "–", v=v or "", cls="l"))
            else:
                cells.append(number(v, 2, kind == "gain"))
        rows.append(Row(cells, {"task": tasks.get(case, DENOISE), "case": case}))
    return Table(columns, rows, id="headline-table")


# ---------------------------------------------------------------- overview matrix and ranking


def overview_table(ov: pd.DataFrame, lb: pd.DataFrame) -> Table:
    """Parts (rows: weightings, then restorers) × task and case (columns); each cell the mean
    paired gain over the reference with ▲/▼ for a significant gain/loss, colour-scaled, linked
    to its detailed table."""
    layout = ordered_cases(lb)
    columns = [Column("Learned part", "l"), Column("Kind", "l"), Column("Method", "l")]
    groups = [Column("", span=3)]
    for task, cases in layout:
        present = [c for c in cases if c in set(ov["case"])]
        if not present:
            continue
        groups.append(Column(task_title(task), span=len(present), attrs={"task": task}))
        for case in present:
            columns.append(Column(case, attrs={"task": task, "case": case}))
    rows = []
    for kind in ("weighting", "restorer"):  # columns are complete here: the group row spans them
        parts = ov[ov["part_kind"] == kind]
        if parts.empty:
            continue
        rows.append(Row([Cell(f"{kind}s", cls="l group", span=len(columns))], head=True))
        for part in list(dict.fromkeys(parts["part"])):
            p = parts[parts["part"] == part]
            first = p.iloc[0]
            label = str(part) + (" †" if bool(first["oracle_informed"]) else "")
            cells = [
                Cell(label, v=str(part), cls="l part"),
                text(kind if not first["role"] or kind == "weighting" else first["role"]),
                text(first["method"] or "built-in"),
            ]
            by_case = {str(r["case"]): r for _, r in p.iterrows()}
            for task, cases in layout:
                for case in cases:
                    if case not in set(ov["case"]):
                        continue
                    cells.append(_overview_cell(by_case.get(case), task, case))
            method = str(first["method"]) or "builtin"
            rows.append(Row(cells, {"part": str(part), "kind": kind, "method": method}))
    return Table(columns, rows, id="overview", cls="sortable overview", groups=groups)


def _overview_cell(r, task: str, case: str) -> Cell:
    attrs = {"task": task, "case": case}
    if r is None:
        return Cell("", v="", cls="ov-cell na", attrs=attrs, title="not run on this case")
    if bool(r["is_reference"]):
        return Cell(
            "ref.",
            v="0",
            cls="ov-cell ref",
            href=f"#{r['anchor']}",
            link_cls="drill",
            attrs=attrs,
            title="the reference row of this column",
        )
    g = r["gain"]
    if not fin(g):
        return Cell(
            "n/a",
            v="",
            cls="ov-cell na",
            href=f"#{r['anchor']}",
            link_cls="drill",
            attrs=attrs,
            title=str(r.get("note", "") or "no paired images"),
        )
    mark = {1: " ▲", -1: " ▼"}.get(int(r["sign"]), "")
    half = (r["ci_high"] - r["ci_low"]) / 2 if fin(r["ci_low"]) else math.nan
    tip = (
        f"gain {fmt(g, 2, True)} dB, {fmt(r['ci_low'], 2, True)} … {fmt(r['ci_high'], 2, True)}"
        f" (n = {int(r['n'])} images), p (Holm) {fmt_p(r['p_holm'])}"
        + ("; significant" if int(r["sign"]) else "; tied")
    )
    return Cell(
        f"{fmt(g, 2, True)}{mark}",
        v=sort_value(num(g)),
        cls="ov-cell" + (" sig" if int(r["sign"]) else ""),
        title=tip,
        href=f"#{r['anchor']}",
        link_cls="drill",
        colour=str(r["colour"]),
        sub=f"± {fmt(half, 2)}" if fin(half) else "",
        attrs=attrs,
    )


def ranking_table(rk: pd.DataFrame, kind: str, table_id: str) -> Table:
    r = rk[rk["part_kind"] == kind]
    columns = [
        Column("Part", "l"),
        Column("Method", "l"),
        Column(f"Mean rank {ARROW['lower']}"),
        Column("CI"),
        Column("Cases"),
        Column("Significant wins"),
    ]
    rows = []
    for _, x in r.iterrows():
        lo, hi = x["rank_ci_low"], x["rank_ci_high"]
        ci = f"{fmt(lo, 2)} … {fmt(hi, 2)}" if fin(lo) else "–"
        rows.append(
            Row(
                [
                    text(x["part"]),
                    text(x["method"] or "built-in"),
                    number(x["mean_rank"], 2),
                    Cell(ci, v=sort_value(num(x["rank_ci_low"]))),
                    number(x["n_cases"], 0),
                    number(x["wins"], 0),
                ],
                {"method": str(x["method"]) or "builtin"},
            )
        )
    return Table(columns, rows, id=table_id)


# ---------------------------------------------------------------- convergence, provenance


def _cell_list(cells: pd.DataFrame, value: str, label: str, table_id: str) -> Table:
    tasks = task_of(cells) if len(cells) else {}
    columns = [
        Column("Case", "l"),
        Column("Restorer", "l"),
        Column("Weighting", "l"),
        Column(label),
        Column("Mean iterations"),
        Column("Rows"),
    ]
    rows = []
    for _, r in cells.iterrows():
        rows.append(
            Row(
                [
                    text(r["case"], href=f"#{case_anchor(r['case'])}", link_cls="drill"),
                    text(r["restorer"]),
                    text(r["weighting"]),
                    Cell(f"{100 * r[value]:.0f} %", v=sort_value(float(r[value])), cls="warn"),
                    number(r["iterations_mean"], 0),
                    number(r["n_rows"], 0),
                ],
                {
                    "task": tasks.get(str(r["case"]), DENOISE),
                    "case": str(r["case"]),
                    "restorer": str(r["restorer"]),
                    "method": method_tokens(
                        str(r["weighting"]), str(r["weighting_method"]), str(r["restorer_method"])
                    ),
                },
            )
        )
    return Table(columns, rows, id=table_id)


def convergence(lb: pd.DataFrame) -> dict[str, Any]:
    bad = lb[lb["converged_fraction"] < 1]
    edge = lb[lb["strength_on_edge_fraction"] > 0]
    return {
        "n_unconverged": len(bad),
        "unconverged": _cell_list(bad, "converged_fraction", "Converged", "unconverged")
        if len(bad)
        else None,
        "n_edge": len(edge),
        "edge": _cell_list(edge, "strength_on_edge_fraction", "At grid edge", "on-edge")
        if len(edge)
        else None,
    }


def _unique(df: pd.DataFrame, col: str) -> list[str]:
    if col not in df.columns:
        return []
    return sorted({str(v) for v in df[col] if str(v) not in ("", "nan", "None")})


def _packages(meta: dict) -> dict | None:
    for k in ("packages", "package_versions", "versions"):
        if isinstance(meta.get(k), dict):
            return meta[k]
    return None


def provenance(
    results: pd.DataFrame, lb: pd.DataFrame, meta: dict, options: dict, synthetic: bool
) -> dict[str, Any]:
    def item(name: str, values: list[str], limit: int = 8) -> dict[str, Any]:
        return {"name": name, "values": values[:limit], "more": max(0, len(values) - limit)}

    items = [
        item("git commit", _unique(results, "git_commit")),
        item("params hash", _unique(results, "params_hash")),
        item("dataset hash", _unique(results, "dataset_hash")),
        item("weighting checkpoints", _unique(results, "weighting_checkpoint"), limit=40),
        item("restorer checkpoints", _unique(results, "restorer_checkpoint"), limit=40),
    ]
    n_cases = []
    for case in list(dict.fromkeys(lb["case"])):
        c = lb[lb["case"] == case]
        r = results[results["case"].astype(str) == case]
        ns = sorted({int(v) for v in c["n"]})
        learned = c[(c["weighting_method"] != "") | (c["restorer_method"] != "")]
        seeds = sorted({int(v) for v in learned["n_seeds"]})
        n_cases.append(
            Row(
                [
                    text(case),
                    number(len(c), 0),
                    number(r["image_id"].nunique(), 0),
                    Cell(
                        ", ".join(map(str, ns)),
                        v=sort_value(float(min(ns))),
                        cls="warn" if len(ns) > 1 else "",
                    ),
                    Cell(
                        ", ".join(map(str, seeds)) or "–",
                        v=sort_value(float(min(seeds))) if seeds else "",
                    ),
                    number(len(r), 0),
                ]
            )
        )
    n_table = Table(
        [
            Column("Case", "l"),
            Column("Cells"),
            Column("Test images"),
            Column("n per cell"),
            Column("Seeds (learned parts)"),
            Column("Rows"),
        ],
        n_cases,
        id="n-table",
    )
    pk = _packages(meta)
    packages = None
    if pk:
        packages = Table(
            [Column("Package", "l"), Column("Version", "l")],
            [Row([text(k), text(v)]) for k, v in sorted(pk.items(), key=lambda kv: str(kv[0]))],
            id="packages",
        )
    return {
        "items": items,
        "mlflow_runs": len(_unique(results, "mlflow_run_id")),
        "schema_version": str(meta.get("schema_version", "–")),
        "synthetic": synthetic,
        "confidence": float(options["confidence"]),
        "reference": str(options["reference"]),
        "test": str(options["test"]),
        "families": ", ".join(f"{LABEL[k]} {int(lb[f'{k}_p'].notna().sum())}" for k in METRICS),
        "n_table": n_table,
        "packages": packages,
        "meta_json": json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False, default=str),
    }


# ---------------------------------------------------------------- filters


def filter_options(lb: pd.DataFrame) -> list[dict[str, Any]]:
    """The four selects: task, case, restorer, method (values as they appear in the rows)."""
    layout = ordered_cases(lb)
    tokens: list[str] = []
    for w, wm, rm in zip(
        lb["weighting"], lb["weighting_method"], lb["restorer_method"], strict=True
    ):
        tokens += method_tokens(str(w), str(wm), str(rm)).split()
    methods = sorted(set(tokens) - {"builtin"}) + (["builtin"] if "builtin" in tokens else [])
    return [
        {"key": "task", "label": "Task", "values": [t for t, _ in layout]},
        {"key": "case", "label": "Case", "values": [c for _, cs in layout for c in cs]},
        {
            "key": "restorer",
            "label": "Restorer",
            "values": list(dict.fromkeys(lb["restorer"].astype(str))),
        },
        {"key": "method", "label": "Method", "values": methods},
    ]
