"""The transfer matrix: every (weighting × restorer × case × test image) cell, each restorer's
strength tuned on ``val`` first (``docs/science.md`` §4, ``docs/conventions.md``).

1. **Inputs**: the degraded ``val`` and ``test`` images (hashes checked against the manifest);
   the weightings (:func:`pipeline.evaluate.weightings.plan_weightings`) and restorers
   (:func:`pipeline.evaluate.restorers.plan_restorers`), learned ones from ``models/<method>/``
   (every variant and seed).
2. **Weight maps**, once per (weighting, seed, image), in the driver: they are functions of the
   noisy image only (the oracle excepted) and cheap next to the solves.
3. **Tuning** (Ray tasks): each tuned restorer × weighting × seeds × multiplier of ``grid`` on
   every ``val`` image; the multiplier with the best mean val MPSNR is chosen per (restorer,
   case, weighting, seeds) (ties: the one nearest 1), flagged when on the grid's edge.
4. **Test** (Ray tasks): every cell at its chosen multiplier. A restorer of role ``target`` gets
   every weighting; the others one cell per image with weighting ``none``.

Ray tasks: tuning, one per (restorer, val image, multiplier); test, one per (restorer, test
image); each runs its weightings' solves in turn, and there are enough of them to keep 2 CPUs
busy. The images, the maps and the restorers travel once through the object store. The records
come back to the driver, which is the only writer (Parquet, MLflow).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.cells import NO_WEIGHTING, Job, run_group, weight_key
from pipeline.evaluate.params import EvaluateParams
from pipeline.evaluate.restorers import Restorer, check_restorers, plan_restorers
from pipeline.evaluate.weightings import Weighting, plan_weightings
from pipeline.io import array_sha256, load_npy, load_npz

log = logging.getLogger(__name__)

__all__ = ["check_restorers", "choose", "load_items", "run_transfer"]

NONE = Weighting(NO_WEIGHTING)


def _band_to_show(sigma: np.ndarray, mask: np.ndarray) -> int:
    """The most corrupted band (most flagged pixels, then the largest mean σ)."""
    frac = mask.reshape(mask.shape[0], -1).mean(1)
    if frac.max() > 0:
        return int(np.argmax(frac))
    return int(np.argmax(sigma.reshape(sigma.shape[0], -1).mean(1)))


def load_items(root: Path, manifest, cases: list[str] | None) -> tuple[dict, list[dict]]:
    """Arrays per ``<split>/<case>/<image_id>`` and the manifest rows (as dicts) in order."""
    rows = manifest[manifest.split.isin(["val", "test"])]
    if cases is not None:
        unknown = sorted(set(cases) - set(rows.case))
        if unknown:
            known = ", ".join(sorted(set(rows.case)))
            raise ValueError(f"evaluate.cases: {unknown} not in data/degraded (known: {known})")
        rows = rows[rows.case.isin(cases)]
    for split in ("val", "test"):
        if not (rows.split == split).any():
            raise ValueError(f"data/degraded/manifest.parquet: no {split} images; run degrade")
    items, meta = {}, []
    clean_cache: dict[str, np.ndarray] = {}
    for row in rows.sort_values(["split", "case", "image_id"]).to_dict("records"):
        key = f"{row['split']}/{row['case']}/{row['image_id']}"
        arrays = load_npz(root / row["path"], ("noisy", "sigma", "mask"))
        if array_sha256(arrays["noisy"], arrays["sigma"], arrays["mask"]) != row["sha256"]:
            raise ValueError(f"{row['path']}: content does not match the manifest's sha256")
        if row["clean_path"] not in clean_cache:
            clean = load_npy(root / row["clean_path"])
            if array_sha256(clean) != row["clean_sha256"]:
                raise ValueError(f"{row['clean_path']}: does not match the manifest's hash")
            clean_cache[row["clean_path"]] = clean
        items[key] = {**arrays, "clean": clean_cache[row["clean_path"]]}
        meta.append({**row, "key": key})
    return items, meta


def weight_maps(items: dict, meta: list[dict], weightings: list[Weighting], root: Path,
                device: str = "cpu") -> dict:  # fmt: skip
    """Every weighting's map for every image, computed once (learned parts loaded once, on
    ``device``)."""
    maps = {}
    for wt in weightings:
        part = None if wt.method_cls is None else wt.method_cls.load(root / wt.path, device)
        for row in meta:
            w = wt.compute(items[row["key"]], part)
            if w is not None:
                maps[weight_key(wt.label, wt.seed, row["key"])] = w
    return maps


def _combos(restorer: Restorer, weightings: list[Weighting]) -> list[Weighting]:
    """The weightings a restorer is solved with: all for a target, ``none`` otherwise."""
    return weightings if restorer.weighted else [NONE]


def plan_tuning(
    p: EvaluateParams, meta: list[dict], restorers: list[Restorer], weightings: list[Weighting]
) -> list[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "val"):
        for r in (r for r in restorers if r.tuned):
            for w in _combos(r, weightings):
                for m in p.grid:
                    job = Job("tune", r.label, r.seed, w.label, w.seed, float(m), row["key"])
                    groups.setdefault(("tune", r.key, row["key"], m), []).append(job)
    return list(groups.values())


def choose(tuning: list[dict], grid: list[float]) -> dict[tuple, dict]:
    """(restorer, restorer seed, case, weighting, weighting seed) → the chosen multiplier, its
    mean val MPSNR and whether it lies on the grid's edge."""
    table: dict[tuple, dict[float, list[float]]] = {}
    for r in tuning:
        case = r["item"].split("/")[1]
        key = (r["restorer"], r["restorer_seed"], case, r["weighting"], r["weighting_seed"])
        table.setdefault(key, {}).setdefault(r["multiplier"], []).append(r["mpsnr"])
    edges = (min(grid), max(grid)) if len(grid) > 1 else ()
    chosen = {}
    for key, by_m in table.items():
        scores = {m: float(np.mean(v)) for m, v in by_m.items()}
        best = max(scores, key=lambda m: (round(scores[m], 9), -abs(math.log(m))))
        chosen[key] = {"multiplier": best, "val_mpsnr": scores[best], "on_edge": best in edges}
    return chosen


def plan_test(
    meta: list[dict],
    restorers: list[Restorer],
    weightings: list[Weighting],
    chosen: dict,
    bands: dict[str, int],
) -> list[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "test"):
        key, case = row["key"], row["case"]
        band = bands.get(key, -1)
        for r in restorers:
            for w in _combos(r, weightings):
                m = math.nan
                if r.tuned:
                    m = chosen[(r.label, r.seed, case, w.label, w.seed)]["multiplier"]
                job = Job("test", r.label, r.seed, w.label, w.seed, m, key, band)
                groups.setdefault(("test", r.key, key), []).append(job)
    return list(groups.values())


def execute(groups: list[list[Job]], payload: dict, p: EvaluateParams, desc: str) -> list[dict]:
    """Fan the groups out as Ray tasks (``p.cpu`` CPUs each); records in submission order."""
    import ray
    from tqdm import tqdm

    ref = ray.put(payload)
    task = ray.remote(num_cpus=p.cpu)(run_group)
    threads = max(1, int(p.cpu))
    futures = [task.remote(g, ref, threads, p.precision) for g in groups]
    index = {f: i for i, f in enumerate(futures)}
    results: list[list[dict] | None] = [None] * len(futures)
    pending = list(futures)
    jobs = sum(len(g) for g in groups)
    with tqdm(total=jobs, desc=desc, unit="solve", mininterval=2.0) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = ray.get(done[0])
            bar.update(len(groups[i]))
    return [r for group in results for r in group]  # type: ignore[union-attr]


def run_transfer(root: Path, p: EvaluateParams, device: str = "cpu") -> dict[str, Any]:
    """Tuning and test records, plus what the writers need (weightings, restorers, bands, maps).
    Learned weight maps are computed on ``device``."""
    import pandas as pd

    manifest = pd.read_parquet(root / "data" / "degraded" / "manifest.parquet")
    items, meta = load_items(root, manifest, p.cases)
    weightings = plan_weightings(p.weightings, root)
    restorers = plan_restorers(p, root)
    log.info(
        "%d weightings × %d restorers × %d cases; %d val and %d test images",
        len(weightings),
        len(restorers),
        len({r["case"] for r in meta}),
        len({r["image_id"] for r in meta if r["split"] == "val"}),
        len({r["image_id"] for r in meta if r["split"] == "test"}),
    )
    maps = weight_maps(items, meta, weightings, root, device)
    payload = {
        "items": items,
        "weights": maps,
        "restorers": {r.key: r for r in restorers},
        "root": str(root),
    }

    tune_groups = plan_tuning(p, meta, restorers, weightings)
    tuning = execute(tune_groups, payload, p, "tuning on val")
    chosen = choose(tuning, p.grid)

    test_ids = sorted({r["image_id"] for r in meta if r["split"] == "test"})
    shown = set(test_ids[: p.gallery_images])
    bands = {
        r["key"]: _band_to_show(items[r["key"]]["sigma"], items[r["key"]]["mask"])
        for r in meta
        if r["split"] == "test" and r["image_id"] in shown
    }
    test = execute(plan_test(meta, restorers, weightings, chosen, bands), payload, p, "test cells")
    return {
        "tuning": tuning,
        "test": test,
        "chosen": chosen,
        "meta": meta,
        "items": items,
        "maps": maps,
        "bands": bands,
        "weightings": weightings,
        "restorers": restorers,
    }
