"""The regularising-gradient method's own report sections: the four trainings across tasks.

The paper's claim is comparative (Willingham et al. 2024): the training that regularises the
equilibrium by the bound (``rerg``) is good on every task while each other training fails on at
least one, so the number to compare is the *worst-task* MPSNR. From the results table, at the
reference weighting (``report.reference``, unweighted by default):

* ``rg-tasks``: per task × variant, the MPSNR averaged over the task's cases per test image, with
  a t-interval over images (the image is the unit), beside the reference restorer (TV, strength
  tuned on val on the same cases), GD iterations and seconds per cell;
* ``rg-worst``: per variant, its worst task (the lowest mean) and that MPSNR; ranked;
* ``rg-claim``: rerg's worst-task MPSNR minus each other variant's, paired over images, and per
  task whether rerg is the lowest of the variants, with the paired intervals that say whether it
  is significantly so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report.sections import Section
from pipeline.report.stats import PAIRED_COLUMNS, PAIRED_DIGITS, paired_difference, t_interval

METHOD = "rg"
CLAIMED = "rerg"  # the variant the paper's claim is about


def _per_image(results: pd.DataFrame, reference: str, baseline: str) -> pd.DataFrame:
    """(task, row, image_id) → MPSNR averaged over the task's cases and the seeds; rows are the
    rg variants and the baseline restorer, at the reference weighting, on the test split."""
    r = results[(results["split"] == "test") & (results["weighting"] == reference)]
    mine = r[r["restorer_method"] == METHOD]
    if mine.empty:
        return pd.DataFrame(columns=["task", "row", "image_id", "mpsnr", "iterations", "time_s"])
    tasks = set(mine["task"])
    base = r[(r["restorer"] == baseline) & r["task"].isin(tasks)]
    both = pd.concat([mine.assign(row=mine["restorer_variant"]), base.assign(row=baseline)])
    per_case = both.groupby(["task", "row", "case", "image_id"], sort=True).agg(
        mpsnr=("mpsnr", "mean"), iterations=("iterations", "mean"), time_s=("time_s", "mean")
    )
    return per_case.groupby(level=["task", "row", "image_id"]).mean().reset_index()


def task_frame(per: pd.DataFrame, confidence: float) -> pd.DataFrame:
    cols = ["task", "row", "mpsnr_mean", "ci_low", "ci_high", "n", "iterations", "time_s"]
    records = []
    for (task, row), g in per.groupby(["task", "row"], sort=True):
        iv = t_interval(g["mpsnr"].to_numpy(np.float64), confidence)
        records.append({"task": task, "row": row, "mpsnr_mean": iv.mean, "ci_low": iv.low,
                        "ci_high": iv.high, "n": iv.n, "iterations": g["iterations"].mean(),
                        "time_s": g["time_s"].mean()})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=cols)


def worst_frame(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per row (variant or baseline): its worst task and that mean MPSNR, best first."""
    cols = ["rank", "row", "worst_task", "worst_mpsnr", "ci_low", "ci_high", "tasks"]
    if tasks.empty:
        return pd.DataFrame(columns=cols)
    idx = tasks.groupby("row")["mpsnr_mean"].idxmin()
    w = tasks.loc[idx].rename(columns={"task": "worst_task", "mpsnr_mean": "worst_mpsnr"})
    w["tasks"] = w["row"].map(tasks.groupby("row")["task"].nunique())
    w = w.sort_values("worst_mpsnr", ascending=False).reset_index(drop=True)
    w["rank"] = np.arange(1, len(w) + 1)
    return w[cols]


def claim_frame(per: pd.DataFrame, worst: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """rerg against each other variant: worst task vs worst task, and task by task, paired over
    test images; ``significant`` where the interval excludes 0."""
    cols = ["comparison", "scope", "mean_diff", "ci_low", "ci_high", "n", "significant"]
    variants = sorted(set(per["row"]))
    if CLAIMED not in variants:
        return pd.DataFrame(columns=cols)
    worst_task = dict(zip(worst["row"], worst["worst_task"], strict=True))
    by = per.set_index(["task", "row", "image_id"])["mpsnr"]
    records = []

    def add(comparison, scope, a, b):
        records.append({"comparison": comparison, "scope": scope,
                        **paired_difference(a, b, confidence)})  # fmt: skip

    for other in (v for v in variants if v != CLAIMED):
        a = by.loc[(worst_task[CLAIMED], CLAIMED)]
        b = by.loc[(worst_task[other], other)]
        add(f"{CLAIMED} − {other}", "worst task vs worst task", a, b)
        for task in sorted(set(per["task"])):
            if (task, CLAIMED) in by.index.droplevel(2) and (task, other) in by.index.droplevel(2):
                add(f"{CLAIMED} − {other}", task, by.loc[(task, CLAIMED)], by.loc[(task, other)])
    return pd.DataFrame.from_records(records, columns=cols)


def claim_sentence(claim: pd.DataFrame, worst: pd.DataFrame, baseline: str) -> str:
    """Whether "rerg is never the worst and has the best worst-task MPSNR" holds, in words."""
    if claim.empty:
        return f"The claim about {CLAIMED} cannot be checked: it was not evaluated."
    v = worst[worst["row"] != baseline]
    best = v.iloc[0]["row"]
    wt = claim[claim["scope"] == "worst task vs worst task"]
    beaten = wt[wt["significant"] & (wt["mean_diff"] < 0)]["comparison"].tolist()
    ahead = wt[wt["significant"] & (wt["mean_diff"] > 0)]["comparison"].tolist()
    per_task = claim[claim["scope"] != "worst task vs worst task"]
    tasks = sorted(set(per_task["scope"]))
    worst_on = [t for t in tasks
                if (g := per_task[per_task["scope"] == t]).shape[0]
                and (g["significant"] & (g["mean_diff"] < 0)).all()]  # fmt: skip
    parts = [
        f"Best worst-task MPSNR: {best} ({v.iloc[0]['worst_mpsnr']:.2f} dB on "
        f"{v.iloc[0]['worst_task']})."
    ]
    if ahead and not beaten and len(ahead) == len(wt):
        parts.append(f"{CLAIMED}'s worst task is significantly better than every other's.")
    elif beaten:
        parts.append(f"{CLAIMED}'s worst task is significantly below: {', '.join(beaten)}.")
    else:
        parts.append(f"{CLAIMED}'s worst-task MPSNR is tied with the others' (no significant "
                     "difference at this n).")  # fmt: skip
    parts.append(
        f"{CLAIMED} is significantly the worst variant on: {', '.join(worst_on)}."
        if worst_on
        else f"{CLAIMED} is significantly the worst variant on no task."
    )
    return " ".join(parts)


def report_sections(results: pd.DataFrame, lb: pd.DataFrame, options) -> list[Section]:
    reference, confidence = options.reference, options.confidence
    baseline = options.reference_restorer
    per = _per_image(results, reference, baseline)
    if per.empty:
        return []
    tasks = task_frame(per, confidence)
    worst = worst_frame(tasks)
    variants = per[per["row"] != baseline]
    claim = claim_frame(variants, worst[worst["row"] != baseline], confidence)
    sentence = claim_sentence(claim, worst, baseline)
    pct = f"{confidence:.0%}"
    return [
        Section(
            name="rg-tasks",
            title="Regularising gradients: every training on every task",
            text=(
                f"MPSNR of GD with each variant's learned gradient, at the {reference} weighting, "
                f"averaged over each task's cases per test image, with its {pct} t-interval over "
                f"images; beside {baseline} (strength tuned on val on the same cases). "
                "Iterations and seconds are per restored cube."
            ),
            table=tasks,
            columns={
                "task": "Task",
                "row": "Variant",
                "mpsnr_mean": "MPSNR ↑ (dB)",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "n": "n",
                "iterations": "GD iterations",
                "time_s": "Seconds",
            },
            digits={
                "mpsnr_mean": 2,
                "ci_low": 2,
                "ci_high": 2,
                "n": 0,
                "iterations": 1,
                "time_s": 3,
            },
        ),
        Section(
            name="rg-worst",
            title="Regularising gradients: worst-task ranking",
            text=(
                "Each variant's worst task (its lowest mean MPSNR over the tasks above), ranked "
                "by that MPSNR. " + sentence
            ),
            table=worst,
            columns={
                "rank": "Rank",
                "row": "Variant",
                "worst_task": "Worst task",
                "worst_mpsnr": "Worst-task MPSNR ↑",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "tasks": "Tasks",
            },
            digits={"rank": 0, "worst_mpsnr": 2, "ci_low": 2, "ci_high": 2, "tasks": 0},
        ),
        Section(
            name="rg-claim",
            title=f"Regularising gradients: is {CLAIMED} never the worst?",
            text=(
                f"Paired MPSNR differences over test images ({pct} t-intervals): {CLAIMED} "
                "minus each other variant, on their worst tasks and task by task."
            ),
            table=claim,
            columns={"comparison": "Comparison", "scope": "On", **PAIRED_COLUMNS},
            digits=PAIRED_DIGITS,
        ),
    ]
