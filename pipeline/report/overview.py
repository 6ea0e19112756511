"""The report's overview: one gain per (part, case), a ranking over cases and a headline per task.

A *part* is either a **weighting** (every ``weighting`` label but ``none``: the built-ins
``unweighted``, ``handcrafted``, ``oracle`` and learned ones such as ``dlw:tv+tvs``) or a
**restorer** (every ``restorer`` label: variational models, peers such as ``bm4d``, learned
restorers). MPSNR (dB) is the metric; the image is the unit of every interval
(docs/conventions.md). With ``x(r, w, i)`` the MPSNR of restorer r with weighting w on image i,
**averaged over its seeds first** (the distinct ``weighting_seed`` / ``restorer_seed`` runs):

- **weighting gain** of w in a case, against the reference weighting ``ref`` (option
  ``reference``, ``unweighted`` by default): per image i,
  ``d_i = mean_{r ∈ R_i} [x(r, w, i) − x(r, ref, i)]`` with ``R_i`` the restorers that took both w
  and ref on image i; ``gain = mean_i d_i`` over the images with at least one such restorer;
- **restorer gain** of r in a case, against the reference restorer ``r0`` (option
  ``reference_restorer``, ``tv`` by default) with the reference weighting:
  ``d_i = x(r, b_r, i) − x(r0, b_r0, i)`` over the images both ran, where ``b_r`` is ``none``
  for a restorer that takes no weighting in that case (peers, plain learned restorers) and
  ``ref`` otherwise;
- every gain comes with a two-sided Student t-interval over the images (n − 1 dof) and the
  two-sided p-value of ``mean_i d_i = 0`` (one-sample t-test of the ``d_i``, or the exact
  sign-flip test for n ≤ 12, :func:`pipeline.report.stats.paired_p`); Holm's adjustment runs
  over every non-reference cell of the whole overview (weightings and restorers, all cases); a
  cell is *significant* when its Holm-adjusted p is below 1 − confidence. The reference part's
  own cell has gain 0 and no p-value.

The ``task`` of a case is its ``task`` label ("denoise", "blur-g1.6", "sr-x2", ...); results
written before tasks existed have no such column and are all ``denoise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.report.leaderboard import NO_WEIGHTING, REFERENCE, check_columns, first_seen
from pipeline.report.stats import TESTS, holm, paired_p, t_interval
from pipeline.report.view import case_anchor, slug

# The default reference restorer of restorer gains (the report option ``reference_restorer``).
REFERENCE_RESTORER = "tv"
# What the overview reads of results.parquet (``task`` is optional: absent means "denoise").
OVERVIEW_REQUIRED = (
    "case",
    "image_id",
    "weighting",
    "weighting_method",
    "restorer",
    "restorer_method",
    "restorer_role",
    "oracle_informed",
    "mpsnr",
)
KINDS = ("weighting", "restorer")
OVERVIEW_COLUMNS = (
    "part_kind",
    "part",
    "method",
    "role",
    "oracle_informed",
    "is_reference",
    "reference",
    "task",
    "case",
    "gain",
    "ci_low",
    "ci_high",
    "n",
    "p",
    "test",
    "p_holm",
    "significant",
    "sign",
    "mpsnr_mean",
    "restorers",
    "colour",
    "anchor",
    "note",
)
RANKING_COLUMNS = (
    "part_kind",
    "part",
    "method",
    "role",
    "oracle_informed",
    "is_reference",
    "mean_rank",
    "rank_ci_low",
    "rank_ci_high",
    "n_cases",
    "wins",
    "gain_mean",
)
# How :func:`ranking` aggregates over cases (printed on the page beside the table).
RANK_AGGREGATION = "mean rank over cases, t-interval over cases"
# Ends of the diverging colour scale (sRGB): blue for worse than the reference, orange for
# better; both keep black text above a WCAG contrast of 6, and every tint between them and
# white is lighter still.
NEGATIVE_END = (0x43, 0x93, 0xC3)
POSITIVE_END = (0xE0, 0x82, 0x14)
WHITE = "#ffffff"
# Marks an oracle-informed part (it knows the true σ or mask) in the headline sentences.
DAGGER = "†"


def colour_scale(ov: pd.DataFrame) -> float:
    """The end of the overview's colour scale: the largest finite |gain| (NaN for none)."""
    gain = np.abs(ov["gain"].to_numpy(dtype=np.float64))
    gain = gain[np.isfinite(gain)]
    return float(gain.max()) if gain.size else math.nan


def diverging_colour(value: float, scale: float) -> str:
    """The CSS colour ``#rrggbb`` of ``value`` on a diverging scale symmetric about 0.

    With ``t = min(|value| / scale, 1)`` each sRGB channel is ``round(255 + t · (end − 255))``
    (half to even), a linear blend from white (t = 0) to the end colour: ``#4393c3`` (blue) for
    a negative value, ``#e08214`` (orange) for a positive one. A value beyond ±scale is clipped
    to the end colour. White for 0, for NaN, and when ``scale`` is not a positive finite
    number. Black text stays readable on every colour of the scale (contrast ≥ 6:1)."""
    v = float(value)
    s = float(scale)
    if math.isnan(v) or v == 0.0 or not (math.isfinite(s) and s > 0.0):
        return WHITE
    t = min(abs(v) / s, 1.0)
    end = POSITIVE_END if v > 0 else NEGATIVE_END
    rgb = (round(255.0 + t * (c - 255.0)) for c in end)
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _joined(values) -> str:
    """The distinct labels of a column, sorted and joined (one value in practice)."""
    return " | ".join(sorted({str(v) for v in values}))


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    check_columns(results, "results", OVERVIEW_REQUIRED)
    cols = [*OVERVIEW_REQUIRED, *(["task"] if "task" in results.columns else [])]
    df = results[cols].copy()
    if "task" not in df.columns:  # results written before tasks had operators: all denoising
        df["task"] = "denoise"
    for col in ("case", "image_id", "weighting", "weighting_method", "restorer"):
        df[col] = df[col].astype(str)
    for col in ("restorer_method", "restorer_role", "task"):
        df[col] = df[col].astype(str)
    df["oracle_informed"] = df["oracle_informed"].astype(bool)
    df["mpsnr"] = df["mpsnr"].astype(np.float64)
    return df


def _per_image(df: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    """(case, restorer, weighting) → the seed-averaged MPSNR per image (finite values only,
    indexed by image id in sorted order)."""
    x = df.groupby(["case", "restorer", "weighting", "image_id"], sort=True)["mpsnr"].mean()
    out = {}
    for key, s in x.groupby(level=["case", "restorer", "weighting"], sort=True):
        s = s.droplevel(["case", "restorer", "weighting"])
        out[tuple(key)] = s[np.isfinite(s.to_numpy())]
    return out


def _stats(d: np.ndarray, confidence: float, test: str) -> dict[str, Any]:
    iv = t_interval(d, confidence)
    p, used = paired_p(d, np.zeros_like(d), test) if iv.n else (math.nan, "")
    return {
        "gain": iv.mean,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "n": iv.n,
        "p": p,
        "test": used,
    }


def _reference_stats(n: int) -> dict[str, Any]:
    """The reference part's own cell: no comparison, a gain of exactly 0 over its n images."""
    zero = 0.0 if n else math.nan
    return {"gain": zero, "ci_low": zero, "ci_high": zero, "n": n, "p": math.nan, "test": ""}


NO_STATS = {
    "gain": math.nan,
    "ci_low": math.nan,
    "ci_high": math.nan,
    "n": 0,
    "p": math.nan,
    "test": "",
}


def _weighting_rows(df, x, case, task, weightings, reference, confidence, test) -> list[dict]:
    c = df[df["case"] == case]
    restorers = first_seen(c["restorer"])
    ref_run = bool((c["weighting"] == reference).any())
    out = []
    for w in weightings:
        rows = c[c["weighting"] == w]
        if rows.empty:
            continue
        # The part's mean MPSNR: per image the mean over the restorers that took w, then over
        # the images.
        taken = [x[(case, r, w)] for r in restorers if (case, r, w) in x]
        mean = pd.concat(taken).groupby(level=0).mean().mean() if taken else math.nan
        pairs = []
        for r in restorers:
            a, b = x.get((case, r, w)), x.get((case, r, reference))
            if a is None or b is None:
                continue
            d = (a - b).dropna()  # aligned on image id: only the images both ran
            pairs.append(pd.DataFrame({"restorer": r, "image_id": d.index, "d": d.to_numpy()}))
        pairs = pd.concat(pairs) if pairs else pd.DataFrame(columns=["restorer", "image_id", "d"])
        per_image = pairs.groupby("image_id", sort=True)["d"].mean().to_numpy(dtype=np.float64)
        note = ""
        if w == reference:
            st = _reference_stats(len(per_image))
        elif not ref_run:
            st, note = dict(NO_STATS), f"reference weighting {reference!r} not run in this case"
        elif pairs.empty:
            st, note = dict(NO_STATS), f"no restorer ran both this weighting and {reference!r}"
        else:
            st = _stats(per_image, confidence, test)
        out.append(
            {
                "part_kind": "weighting",
                "part": w,
                "method": _joined(rows["weighting_method"]),
                "role": "weighting",
                "oracle_informed": bool(rows["oracle_informed"].any()),
                "is_reference": w == reference,
                "reference": reference,
                "task": task,
                "case": case,
                **st,
                "mpsnr_mean": float(mean),
                "restorers": int(pairs["restorer"].nunique()),
                "anchor": case_anchor(case),
                "note": note,
            }
        )
    return out


def _baseline(c: pd.DataFrame, restorer: str, reference: str) -> str:
    """The weighting a restorer's row uses: ``none`` when it takes no weighting in this case,
    the reference weighting otherwise."""
    taken = set(c.loc[c["restorer"] == restorer, "weighting"])
    return reference if taken - {NO_WEIGHTING} else NO_WEIGHTING


def _restorer_rows(df, x, case, task, restorers, reference, ref_restorer, confidence, test):
    c = df[df["case"] == case]
    empty = pd.Series(dtype=np.float64)
    base0 = _baseline(c, ref_restorer, reference)
    x0 = x.get((case, ref_restorer, base0), empty)
    ran0 = bool((c["restorer"] == ref_restorer).any())
    out = []
    for r in restorers:
        if not (c["restorer"] == r).any():
            continue
        base = _baseline(c, r, reference)
        xr = x.get((case, r, base), empty)
        rows = c[(c["restorer"] == r) & (c["weighting"] == base)]
        note = ""
        if r == ref_restorer:
            st = _reference_stats(len(xr))
            if xr.empty:
                note = f"not run with {reference!r} in this case"
        elif not ran0:
            st, note = dict(NO_STATS), f"reference restorer {ref_restorer!r} not run in this case"
        elif x0.empty:
            st = dict(NO_STATS)
            note = f"reference restorer {ref_restorer!r} not run with {reference!r} in this case"
        elif xr.empty:
            st, note = dict(NO_STATS), f"not run with {reference!r} in this case"
        else:
            d = (xr - x0).dropna().to_numpy(dtype=np.float64)
            st = _stats(d, confidence, test)
            if not d.size:
                note = f"no image shared with {ref_restorer!r}"
        out.append(
            {
                "part_kind": "restorer",
                "part": r,
                "method": _joined(c.loc[c["restorer"] == r, "restorer_method"]),
                "role": _joined(c.loc[c["restorer"] == r, "restorer_role"]),
                "oracle_informed": bool(rows["oracle_informed"].any()),
                "is_reference": r == ref_restorer,
                "reference": ref_restorer,
                "task": task,
                "case": case,
                **st,
                "mpsnr_mean": float(xr.mean()) if len(xr) else math.nan,
                "restorers": 1,
                # Its own table in the case: one of weightings, or that of restorers without.
                "anchor": f"{case_anchor(case)}-restorers"
                if base == NO_WEIGHTING
                else f"{case_anchor(case)}--{slug(r)}",
                "note": note,
            }
        )
    return out


def overview(
    results: pd.DataFrame,
    reference: str = REFERENCE,
    reference_restorer: str = REFERENCE_RESTORER,
    confidence: float = 0.95,
    test: str = "t",
) -> pd.DataFrame:
    """The overview table of ``results`` (rows of results.parquet): one row per (part, case)
    with a run of that part, columns :data:`OVERVIEW_COLUMNS` (module docstring for the gains).

    - ``part_kind``: ``weighting`` or ``restorer``; ``part``: its label; ``method``: the
      ``weighting_method`` / ``restorer_method`` ("" for a built-in weighting or a classical
      restorer); ``role``: ``weighting`` for weightings, the ``restorer_role`` (target, peer,
      learned) for restorers; ``oracle_informed``: any row behind the cell is (a weighting: its
      rows in the case; a restorer: its rows with the weighting its gain uses);
    - ``is_reference``: the reference weighting / restorer's own cell (gain 0, p NaN);
      ``reference``: what the gain is measured against;
    - ``gain``, ``ci_low``, ``ci_high``: mean over images of the per-image differences (dB) and
      its t-interval; ``n``: images paired; ``p`` and ``test`` (``t`` or ``sign-flip``);
      ``p_holm``: Holm over every non-reference cell with a p-value; ``significant``:
      ``p_holm < 1 − confidence``; ``sign``: +1 significantly better, −1 significantly worse,
      0 otherwise;
    - ``mpsnr_mean``: the part's mean MPSNR in the case (a weighting: per image the mean over
      the restorers that took it, then the mean over images; a restorer: the mean over images
      of its rows with ``none`` or the reference weighting);
    - ``restorers``: how many restorers a weighting's gain averages over (1 for restorer rows);
    - ``colour``: :func:`diverging_colour` of the gain, scaled by the largest finite |gain| of
      the whole overview; ``anchor``: the id of the detail section, ``case-<slug(case)>`` for a
      weighting, ``case-<slug(case)>--<slug(restorer)>`` for a restorer that takes weightings
      (its table) and ``case-<slug(case)>-restorers`` for one that takes none
      (:func:`pipeline.report.view.slug`);
    - ``note``: why a cell has no gain ("" otherwise).

    Cases where the reference restorer (or the reference weighting) did not run keep their rows
    with NaN gains and a note. Rows are ordered by task, then case (both in the order the results
    list them), then kind (weightings first), then part (the reference first, then the order of
    the results)."""
    if test not in TESTS:
        raise ValueError(f"unknown paired test {test!r}: use one of {list(TESTS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    df = _prepare(results)
    weightings = [w for w in first_seen(df["weighting"]) if w != NO_WEIGHTING]
    restorers = first_seen(df["restorer"])
    if weightings and reference not in weightings:
        raise ValueError(
            f"reference weighting {reference!r} is no weighting of the results; "
            f"they hold {sorted(weightings)}"
        )
    if reference_restorer not in restorers:
        raise ValueError(
            f"reference restorer {reference_restorer!r} is no restorer of the results; "
            f"they hold {sorted(restorers)}"
        )
    weightings = [reference] + [w for w in weightings if w != reference] if weightings else []
    restorers = [reference_restorer] + [r for r in restorers if r != reference_restorer]
    x = _per_image(df)
    case_task = df.groupby("case", sort=False)["task"].agg(_joined)
    tasks = first_seen(case_task)
    cases = sorted(first_seen(df["case"]), key=lambda c: tasks.index(case_task[c]))

    records: list[dict] = []
    for case in cases:
        task = case_task[case]
        records += _weighting_rows(df, x, case, task, weightings, reference, confidence, test)
        records += _restorer_rows(
            df, x, case, task, restorers, reference, reference_restorer, confidence, test
        )
    ov = pd.DataFrame.from_records(records)
    ov["p_holm"] = holm(ov["p"].to_numpy(dtype=np.float64))
    ov["significant"] = ov["p_holm"].to_numpy() < 1.0 - confidence  # NaN compares False
    gain = ov["gain"].to_numpy(dtype=np.float64)
    ov["sign"] = np.where(ov["significant"], np.sign(np.nan_to_num(gain)), 0).astype(np.int64)
    scale = colour_scale(ov)
    ov["colour"] = [diverging_colour(g, scale) for g in gain]
    ov["n"] = ov["n"].astype(np.int64)
    ov["restorers"] = ov["restorers"].astype(np.int64)
    return ov[list(OVERVIEW_COLUMNS)].reset_index(drop=True)


def overview_matrix(ov: pd.DataFrame, value: str = "gain") -> pd.DataFrame:
    """``value`` (the gain by default) of every part × (task, case): rows indexed by
    (``part_kind``, ``part``), weightings first, each kind in the order the overview first lists
    its parts; columns a (``task``, ``case``) MultiIndex in the overview's order. A part without
    a run in a case is NaN there. For a CSV export (``to_csv`` writes two header rows)."""
    rows = [(k, p) for k in KINDS for p in first_seen(ov.loc[ov["part_kind"] == k, "part"])]
    cols = list(dict.fromkeys(zip(ov["task"], ov["case"], strict=True)))
    m = ov.pivot(index=["part_kind", "part"], columns=["task", "case"], values=value)
    m = m.reindex(
        index=pd.MultiIndex.from_tuples(rows, names=["part_kind", "part"]),
        columns=pd.MultiIndex.from_tuples(cols, names=["task", "case"]),
    )
    return m


def ranking(ov: pd.DataFrame, confidence: float = 0.95, task: str | None = None) -> pd.DataFrame:
    """Ranks of the parts over cases, separately for weightings and for restorers (columns
    :data:`RANKING_COLUMNS`; only the cases of ``task`` when given).

    Within every case the parts of a kind with a finite gain, the reference included (gain 0),
    are ranked by gain: 1 = the largest; tied gains share the mean of their ranks. Per part:
    ``mean_rank`` over the cases where it has a finite gain with a Student t-interval over those
    cases (``rank_ci_low``, ``rank_ci_high``; NaN for one case), ``n_cases``, ``wins``: the cases
    where it is significantly better than the reference (Holm-adjusted p < 1 − confidence and
    gain > 0), and ``gain_mean``, its mean gain over those cases. Sorted by kind (weightings
    first), then mean rank, then the order of the overview; parts never ranked come last."""
    if task is not None:
        ov = ov[ov["task"] == task]
    ok = ov[np.isfinite(ov["gain"].to_numpy(dtype=np.float64))].copy()
    ok["_rank"] = ok.groupby(["part_kind", "case"], sort=False)["gain"].rank(
        ascending=False, method="average"
    )
    win = (ok["p_holm"].to_numpy() < 1.0 - confidence) & (ok["gain"].to_numpy() > 0)
    ok["_win"] = win
    records = []
    for k in KINDS:
        parts = ov[ov["part_kind"] == k]
        for pos, part in enumerate(first_seen(parts["part"])):
            all_rows = parts[parts["part"] == part]
            rows = ok[(ok["part_kind"] == k) & (ok["part"] == part)]
            iv = t_interval(rows["_rank"].to_numpy(dtype=np.float64), confidence)
            records.append(
                {
                    "part_kind": k,
                    "part": part,
                    "method": _joined(all_rows["method"]),
                    "role": _joined(all_rows["role"]),
                    "oracle_informed": bool(all_rows["oracle_informed"].any()),
                    "is_reference": bool(all_rows["is_reference"].any()),
                    "mean_rank": iv.mean,
                    "rank_ci_low": iv.low,
                    "rank_ci_high": iv.high,
                    "n_cases": iv.n,
                    "wins": int(rows["_win"].sum()),
                    "gain_mean": float(rows["gain"].mean()) if len(rows) else math.nan,
                    "_k": KINDS.index(k),
                    "_pos": pos,
                }
            )
    if not records:
        return pd.DataFrame(columns=list(RANKING_COLUMNS))
    r = pd.DataFrame.from_records(records)
    r = r.sort_values(["_k", "mean_rank", "_pos"], kind="stable", na_position="last")
    return r[list(RANKING_COLUMNS)].reset_index(drop=True)


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _images(n: Sequence[int]) -> str:
    lo, hi = min(n), max(n)
    return f"n = {lo} images per case" if lo == hi else f"n = {lo}–{hi} images per case"


def _summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per part of ``cells`` (non-reference, finite gain): mean gain over cases, the number of
    cases, and how many are significantly better / worse; in the overview's part order."""
    g = cells.groupby("part", sort=False)
    s = pd.DataFrame(
        {
            "gain": g["gain"].mean(),
            "cases": g.size(),
            "better": g["sign"].agg(lambda v: int((v > 0).sum())),
            "worse": g["sign"].agg(lambda v: int((v < 0).sum())),
            "method": g["method"].first(),
            "informed": g["oracle_informed"].any(),
        }
    )
    return s


def _best(s: pd.DataFrame) -> str:
    """The part with the largest mean gain (ties: the first in the overview's order)."""
    return str(s.index[int(np.argmax(s["gain"].to_numpy()))])


def _label(s: pd.DataFrame, part: str) -> str:
    return part + (DAGGER if bool(s.loc[part, "informed"]) else "")


def _winner(s: pd.DataFrame, part: str, reference: str) -> str:
    row = s.loc[part]
    return (
        f"{_label(s, part)} {_fmt(row['gain'])} dB over {reference} "
        f"(significant in {int(row['better'])} of {_count(int(row['cases']), 'case')})"
    )


def _tied(kind: str, cells: pd.DataFrame, s: pd.DataFrame, reference: str) -> str:
    worse = int((s["worse"] > 0).sum())
    tail = f"; {worse} significantly worse in some case" if worse else ""
    return (
        f"{kind}s: tied with {reference} (none significantly better after Holm, "
        f"{_images(cells['n'].tolist())}{tail})"
    )


def _clause(kind: str, cells: pd.DataFrame, reference: str) -> str | None:
    """The headline clause of one kind (``weighting`` or ``restorer``) of one task."""
    if cells.empty:
        return None
    s = _summary(cells)
    winners = s[s["better"] > 0]
    if winners.empty:
        return _tied(kind, cells, s, reference)
    best = _best(winners)
    text = f"best {kind} {_winner(s, best, reference)}"
    # A built-in weighting that wins (the oracle, say): also the best learned one, if any.
    if kind == "weighting" and s.loc[best, "method"] == "" and (s["method"] != "").any():
        learned = winners[winners["method"] != ""]
        if learned.empty:
            text += f"; no learned weighting significantly better than {reference}"
        else:
            text += f"; best learned weighting {_winner(s, _best(learned), reference)}"
    return text


def headline(ov: pd.DataFrame) -> list[str]:
    """One plain-text sentence per task (in the overview's order), from the numbers only.

    ``Task <task> (<k> cases): `` then, for the weightings and then the restorers, over the
    non-reference cells of the task with a finite gain (a kind without such cells is left out):

    - when no part is significantly better than the reference in any case (Holm,
      :func:`overview`): ``<kind>s: tied with <ref> (none significantly better after Holm,
      n = <images> images per case[; <k> significantly worse in some case])``;
    - otherwise, among the parts significantly better in at least one case, the one with the
      largest mean gain over the cases (mean of its cell gains): ``best <kind> <part> <gain> dB
      over <ref> (significant in <b> of <m> cases)``; for weightings, when that part is not
      learned (``method`` = ""), also the best learned weighting likewise, or that no learned
      weighting is significantly better.

    Oracle-informed parts (given the true σ or mask) carry :data:`DAGGER`."""
    out = []
    for task in first_seen(ov["task"]):
        t = ov[ov["task"] == task]
        cases = len(first_seen(t["case"]))
        cells = t[~t["is_reference"] & np.isfinite(t["gain"].to_numpy(dtype=np.float64))]
        clauses = []
        for kind in KINDS:
            k = cells[cells["part_kind"] == kind]
            refs = t.loc[t["part_kind"] == kind, "reference"]
            text = _clause(kind, k, str(refs.iloc[0])) if len(refs) else None
            if text:
                clauses.append(text)
        body = "; ".join(clauses) if clauses else "no comparison with a reference"
        out.append(f"Task {task} ({_count(cases, 'case')}): {body}.")
    return out
