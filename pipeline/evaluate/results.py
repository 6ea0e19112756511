"""The tidy tables of the evaluate stage (benchopt style: one row per cell, parameters and
provenance as columns, the run configuration in the Parquet metadata).

* ``reports/results.parquet``: one row per (weighting, restorer, case, test image, seeds of the
  learned parts), with the producing method and variant of each part as columns;
* ``reports/tuning.parquet``: every val solve of the strength grid, the chosen one marked;
* ``reports/gallery.parquet``: one band of the clean, noisy, weight and restored images of a
  few test images, for the report's gallery.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.degrade.tasks import DENOISE
from pipeline.evaluate.cells import NO_WEIGHTING, split_item, weight_key
from pipeline.io import canonical_json, json_sha256

__all__ = [
    "GALLERY_COLUMNS",
    "PACKAGES",
    "RESULT_COLUMNS",
    "gallery_table",
    "git_commit",
    "package_versions",
    "results_table",
    "tuning_table",
]

PACKAGES = (
    "dlw-bench",
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "ray",
    "mlflow",
    "pandas",
    "pyarrow",
    "bm3d",
    "bm4d",
)

RESULT_COLUMNS = [
    "task",
    "case",
    "noise_model",
    "case_params",
    "image_id",
    "split",
    "synthetic",
    "weighting",
    "weighting_method",
    "weighting_variant",
    "weighting_seed",
    "restorer",
    "restorer_method",
    "restorer_variant",
    "restorer_seed",
    "restorer_role",
    "noisy_mpsnr",
    "mpsnr",
    "mssim",
    "sam",
    "ergas",
    "weight_auc",
    "oracle_corr",
    "strength",
    "strength_on_edge",
    "val_mpsnr",
    "reference_strengths",
    "oracle_informed",
    "time_s",
    "iterations",
    "primal_residual",
    "dual_residual",
    "converged",
    "cached",
    "git_commit",
    "params_hash",
    "dataset_hash",
    "mlflow_run_id",
    "weighting_checkpoint",
    "restorer_checkpoint",
]


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(root: str | os.PathLike) -> str:
    """``HEAD``, with ``-dirty`` when the code or params differ from it; ``unknown`` outside
    git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "pipeline", "stages", "params.yaml"],
            cwd=root,
            capture_output=True,
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _facts(run: dict):
    """Weighting label/seed → its entry; restorer label/seed → its entry (``none`` included)."""
    from pipeline.evaluate.transfer import NONE

    weightings = {(w.label, w.seed): w for w in [*run["weightings"], NONE]}
    restorers = {r.key: r for r in run["restorers"]}
    refs = {k: canonical_json(r.reference_strengths()) for k, r in restorers.items()}
    return weightings, restorers, refs


def results_table(run: dict, provenance: dict[str, str], run_ids: dict[tuple, str]):
    """The test records as the results table (rows sorted, columns in ``RESULT_COLUMNS``)."""
    import pandas as pd

    from pipeline.evaluate.metrics import oracle_correlation, weight_auc

    meta = {r["key"]: r for r in run["meta"]}
    items, maps, chosen = run["items"], run["maps"], run["chosen"]
    weightings, restorers, refs = _facts(run)
    scores: dict[tuple, tuple[float, float]] = {}  # a map's scores do not depend on the restorer

    def map_scores(weighting: str, seed: int, key: str) -> tuple[float, float]:
        if weighting == NO_WEIGHTING:
            return math.nan, math.nan
        if (weighting, seed, key) not in scores:
            item = items[key]
            w = maps.get(weight_key(weighting, seed, key))
            w = np.ones_like(item["noisy"]) if w is None else w
            oracle = maps.get(weight_key("oracle", -1, key))
            corr = oracle_correlation(w, oracle) if oracle is not None else math.nan
            scores[(weighting, seed, key)] = (weight_auc(w, item["mask"]), corr)
        return scores[(weighting, seed, key)]

    rows = []
    for r in run["test"]:
        m = meta[r["item"]]
        wt = weightings[(r["weighting"], r["weighting_seed"])]
        rs = restorers[(r["restorer"], r["restorer_seed"])]
        auc, corr = map_scores(r["weighting"], r["weighting_seed"], r["item"])
        cell = (r["restorer"], r["restorer_seed"], m["case"], r["weighting"], r["weighting_seed"])
        pick = chosen.get(cell, {})
        rows.append(
            {
                "task": m.get("task", DENOISE),
                "case": m["case"],
                "noise_model": m["noise_model"],
                "case_params": m["case_params"],
                "image_id": m["image_id"],
                "split": "test",
                "synthetic": bool(m["synthetic"]),
                "weighting": wt.label,
                "weighting_method": wt.method,
                "weighting_variant": wt.variant,
                "weighting_seed": int(wt.seed),
                "restorer": rs.label,
                "restorer_method": rs.method,
                "restorer_variant": rs.variant,
                "restorer_seed": int(rs.seed),
                "restorer_role": rs.role,
                "noisy_mpsnr": float(m["noisy_mpsnr"]),
                "mpsnr": r["mpsnr"],
                "mssim": r["mssim"],
                "sam": r["sam"],
                "ergas": r["ergas"],
                "weight_auc": auc,
                "oracle_corr": corr,
                "strength": r["multiplier"],
                "strength_on_edge": bool(pick.get("on_edge", False)),
                "val_mpsnr": float(pick.get("val_mpsnr", math.nan)),
                "reference_strengths": refs[rs.key],
                "oracle_informed": wt.oracle_informed or rs.oracle_informed,
                "time_s": r["time_s"],
                "iterations": int(r["iterations"]),
                "primal_residual": r["primal_residual"],
                "dual_residual": r["dual_residual"],
                "converged": bool(r["converged"]),
                "cached": bool(r.get("cached", False)),  # read back from the cell cache
                **provenance,
                "mlflow_run_id": run_ids.get(run_key(r), ""),
                "weighting_checkpoint": wt.path,
                "restorer_checkpoint": rs.path,
            }
        )
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    order = ["restorer", "restorer_seed", "weighting", "weighting_seed", "case", "image_id"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def run_key(r) -> tuple:
    """The MLflow run of a record or row: (weighting, its seed, restorer, its seed)."""
    return (r["weighting"], r["weighting_seed"], r["restorer"], r["restorer_seed"])


def tuning_table(run: dict):
    import pandas as pd

    _, _, refs = _facts(run)
    rows = []
    for r in run["tuning"]:
        split, case, image_id = split_item(r["item"])
        cell = (r["restorer"], r["restorer_seed"], case, r["weighting"], r["weighting_seed"])
        pick = run["chosen"][cell]
        rows.append(
            {
                "restorer": r["restorer"],
                "restorer_seed": int(r["restorer_seed"]),
                "weighting": r["weighting"],
                "weighting_seed": int(r["weighting_seed"]),
                "case": case,
                "image_id": image_id,
                "split": split,
                "multiplier": r["multiplier"],
                "mpsnr": r["mpsnr"],
                "iterations": int(r["iterations"]),
                "converged": bool(r["converged"]),
                "time_s": r["time_s"],
                "chosen": r["multiplier"] == pick["multiplier"],
                "on_edge": bool(pick["on_edge"]),
                "reference_strengths": refs[(r["restorer"], r["restorer_seed"])],
            }
        )
    df = pd.DataFrame(rows)
    order = ["restorer", "restorer_seed", "weighting", "weighting_seed", "case", "image_id"]
    return df.sort_values([*order, "multiplier"], kind="stable").reset_index(drop=True)


GALLERY_COLUMNS = (
    "case",
    "image_id",
    "kind",
    "weighting",
    "restorer",
    "band",
    "height",
    "width",
    "values",
)


def gallery_table(run: dict):
    """One band per image of the gallery: clean, noisy, every weight map (first seed) and every
    restoration (first seeds of its weighting and restorer)."""
    import pandas as pd

    meta = {r["key"]: r for r in run["meta"]}
    rows: list[dict[str, Any]] = []

    def add(key: str, kind: str, weighting: str, restorer: str, image: np.ndarray) -> None:
        m, band = meta[key], run["bands"][key]
        rows.append(
            {
                "case": m["case"],
                "image_id": m["image_id"],
                "kind": kind,
                "weighting": weighting,
                "restorer": restorer,
                "band": band,
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "values": np.asarray(image, dtype=np.float32).ravel().tolist(),
            }
        )

    first_seed: dict[str, int] = {}  # per weighting label
    first_restorer: dict[str, int] = {}  # per restorer label
    for r in run["test"]:
        w, s = r["weighting"], r["weighting_seed"]
        first_seed[w] = min(first_seed.get(w, s), s)
        k, s = r["restorer"], r["restorer_seed"]
        first_restorer[k] = min(first_restorer.get(k, s), s)
    for key in sorted(run["bands"]):
        band = run["bands"][key]
        item = run["items"][key]
        add(key, "clean", "", "", item["clean"][band])
        add(key, "noisy", "", "", item["noisy"][band])
        for weighting, seed in sorted(first_seed.items()):
            if weighting == NO_WEIGHTING:
                continue
            w = run["maps"].get(weight_key(weighting, seed, key))
            add(
                key,
                "weight",
                weighting,
                "",
                np.ones_like(item["noisy"][band]) if w is None else w[band],
            )
    # Noise-level maps: the true σ (under the oracle) and the σ̂ of learned weightings that
    # estimate one (Method.noise_map), for the gallery's σ row.
    estimators = [
        w for w in run["weightings"]
        if w.method_cls is not None and w.seed == first_seed.get(w.label)
        and w.method_cls.gives_noise_map
    ]  # fmt: skip
    parts = {w.label: w.load(Path(run.get("root", "."))) for w in estimators}
    for key in sorted(run["bands"]):
        band, item = run["bands"][key], run["items"][key]
        if "oracle" in first_seed:
            add(key, "sigma", "oracle", "", item["sigma"][band])
        for w in estimators:
            sigma = w.method_cls.noise_map(parts[w.label], item["noisy"])
            add(key, "sigma", w.label, "", sigma[band])
    for r in sorted(run["test"], key=lambda r: (r["item"], r["weighting"], r["restorer"])):
        first = (
            r["weighting_seed"] == first_seed[r["weighting"]]
            and r["restorer_seed"] == first_restorer[r["restorer"]]
        )
        if "x_band" in r and first:
            add(r["item"], "restored", r["weighting"], r["restorer"], r["x_band"])
    df = pd.DataFrame(rows, columns=list(GALLERY_COLUMNS))
    return df.sort_values(["case", "image_id", "kind", "weighting", "restorer"], kind="stable")


def params_hash(section: dict) -> str:
    return json_sha256(section)


def run_config(params: dict, provenance: dict, versions: dict) -> dict[str, Any]:
    return {
        "stage": "evaluate",
        "params": json.loads(canonical_json(params)),
        **provenance,
        "versions": versions,
    }
