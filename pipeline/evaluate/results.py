"""The tidy tables of the evaluate stage (benchopt style: one row per cell, parameters and
provenance as columns, the run configuration in the Parquet metadata).

* ``reports/results.parquet``: one row per (method, weighting, seed, target, case, test image);
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
from typing import Any

import numpy as np

from pipeline.evaluate.cells import weight_key
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
    "method",
    "weighting",
    "weighting_kind",
    "source_set",
    "seed",
    "target",
    "case",
    "noise_model",
    "case_params",
    "image_id",
    "split",
    "synthetic",
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
    "git_commit",
    "params_hash",
    "dataset_hash",
    "mlflow_run_id",
    "checkpoint",
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


def _kind(weighting: str) -> str:
    return weighting.split(":", 1)[0] if weighting != "none" else "none"


def _reference_strengths(target: str, overrides: dict | None = None) -> str:
    from pipeline.models.strength import reference_strengths

    if target in ("bm4d", "bm3d"):
        return "{}"
    return canonical_json(reference_strengths(target, (overrides or {}).get(target)))


def results_table(run: dict, provenance: dict[str, str], run_ids: dict[tuple, str]):
    """The test records as the results table (rows sorted, columns in ``RESULT_COLUMNS``)."""
    import pandas as pd

    from pipeline.evaluate.metrics import oracle_correlation, weight_auc

    meta = {r["key"]: r for r in run["meta"]}
    items, maps, chosen = run["items"], run["maps"], run["chosen"]
    ckpt = {(c.weighting, c.seed): c.path for c in run["checkpoints"]}
    refs = {
        t: _reference_strengths(t, run["overrides"]) for t in {r["target"] for r in run["test"]}
    }
    scores: dict[tuple, tuple[float, float]] = {}  # a map's scores do not depend on the target

    def map_scores(weighting: str, seed: int, key: str) -> tuple[float, float]:
        if weighting == "none":
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
        auc, corr = map_scores(r["weighting"], r["seed"], r["item"])
        pick = chosen.get((r["method"], r["target"], m["case"], r["weighting"], r["seed"]), {})
        kind = _kind(r["weighting"])
        rows.append(
            {
                "task": "denoise",
                "method": r["method"],
                "weighting": r["weighting"],
                "weighting_kind": kind,
                "source_set": r["weighting"].split(":", 1)[1] if kind == "dlw" else "",
                "seed": int(r["seed"]),
                "target": r["target"],
                "case": m["case"],
                "noise_model": m["noise_model"],
                "case_params": m["case_params"],
                "image_id": m["image_id"],
                "split": "test",
                "synthetic": bool(m["synthetic"]),
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
                "reference_strengths": refs[r["target"]],
                "oracle_informed": kind == "oracle" or r["method"] in ("bm4d", "bm3d"),
                "time_s": r["time_s"],
                "iterations": int(r["iterations"]),
                "primal_residual": r["primal_residual"],
                "dual_residual": r["dual_residual"],
                "converged": bool(r["converged"]),
                **provenance,
                "mlflow_run_id": run_ids.get((r["weighting"], r["seed"], r["target"]), ""),
                "checkpoint": ckpt.get((r["weighting"], r["seed"]), ""),
            }
        )
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    order = ["method", "target", "weighting", "seed", "case", "image_id"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def tuning_table(run: dict):
    import pandas as pd

    refs = {
        t: _reference_strengths(t, run["overrides"]) for t in {r["target"] for r in run["tuning"]}
    }
    rows = []
    for r in run["tuning"]:
        split, case, image_id = r["item"].split("/")
        pick = run["chosen"][(r["method"], r["target"], case, r["weighting"], r["seed"])]
        rows.append(
            {
                "method": r["method"],
                "target": r["target"],
                "weighting": r["weighting"],
                "seed": int(r["seed"]),
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
                "reference_strengths": refs[r["target"]],
            }
        )
    df = pd.DataFrame(rows)
    order = ["method", "target", "weighting", "seed", "case", "image_id", "multiplier"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


GALLERY_COLUMNS = (
    "case",
    "image_id",
    "kind",
    "weighting",
    "target",
    "band",
    "height",
    "width",
    "values",
)


def gallery_table(run: dict):
    """One band per image of the gallery: clean, noisy, every weight map (first seed) and every
    restoration (first seed)."""
    import pandas as pd

    meta = {r["key"]: r for r in run["meta"]}
    rows: list[dict[str, Any]] = []

    def add(key: str, kind: str, weighting: str, target: str, image: np.ndarray) -> None:
        m, band = meta[key], run["bands"][key]
        rows.append(
            {
                "case": m["case"],
                "image_id": m["image_id"],
                "kind": kind,
                "weighting": weighting,
                "target": target,
                "band": band,
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "values": np.asarray(image, dtype=np.float32).ravel().tolist(),
            }
        )

    first_seed: dict[str, int] = {}
    for r in run["test"]:
        first_seed[r["weighting"]] = min(first_seed.get(r["weighting"], r["seed"]), r["seed"])
    for key in sorted(run["bands"]):
        band = run["bands"][key]
        item = run["items"][key]
        add(key, "clean", "", "", item["clean"][band])
        add(key, "noisy", "", "", item["noisy"][band])
        for weighting, seed in sorted(first_seed.items()):
            if weighting == "none":
                continue
            w = run["maps"].get(weight_key(weighting, seed, key))
            add(
                key,
                "weight",
                weighting,
                "",
                np.ones_like(item["noisy"][band]) if w is None else w[band],
            )
    for r in sorted(run["test"], key=lambda r: (r["item"], r["weighting"], r["target"])):
        if "x_band" in r and r["seed"] == first_seed[r["weighting"]]:
            add(r["item"], "restored", r["weighting"], r["target"], r["x_band"])
    df = pd.DataFrame(rows, columns=list(GALLERY_COLUMNS))
    return df.sort_values(["case", "image_id", "kind", "weighting", "target"], kind="stable")


def params_hash(section: dict) -> str:
    return json_sha256(section)


def run_config(params: dict, provenance: dict, versions: dict) -> dict[str, Any]:
    return {
        "stage": "evaluate",
        "params": json.loads(canonical_json(params)),
        **provenance,
        "versions": versions,
    }
