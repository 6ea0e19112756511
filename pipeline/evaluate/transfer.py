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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.degrade.tasks import DENOISE, load_degraded, operator_hash_arrays
from pipeline.evaluate.cache import CellCache
from pipeline.evaluate.cells import NO_WEIGHTING, Job, run_group, split_item, weight_key
from pipeline.evaluate.params import EvaluateParams
from pipeline.evaluate.restorers import Restorer, check_restorers, plan_restorers
from pipeline.evaluate.scope import Scope
from pipeline.evaluate.weightings import Weighting, plan_weightings
from pipeline.io import array_sha256, load_npy

log = logging.getLogger(__name__)

__all__ = ["check_restorers", "choose", "load_items", "run_transfer"]

NONE = Weighting(NO_WEIGHTING)
CACHE_DIR = Path("runs") / "cache" / "cells"  # engine state: not in git, not a DVC out


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
        arrays, A = load_degraded(root / row["path"])
        extra = operator_hash_arrays(arrays)
        if array_sha256(arrays["noisy"], arrays["sigma"], arrays["mask"], *extra) != row["sha256"]:
            raise ValueError(f"{row['path']}: content does not match the manifest's sha256")
        arrays = {k: arrays[k] for k in ("noisy", "sigma", "mask")}
        arrays["A"] = A  # the forward operator (None: denoising)
        if row["clean_path"] not in clean_cache:
            clean = load_npy(root / row["clean_path"])
            if array_sha256(clean) != row["clean_sha256"]:
                raise ValueError(f"{row['clean_path']}: does not match the manifest's hash")
            clean_cache[row["clean_path"]] = clean
        items[key] = {**arrays, "clean": clean_cache[row["clean_path"]]}
        operator = row.get("operator", "identity")
        meta.append({**row, "key": key, "task": row.get("task", DENOISE), "operator": operator})
    return items, meta


def weight_maps(
    items: dict,
    meta: list[dict],
    weightings: list[Weighting],
    root: Path,
    device: str = "cpu",
    cache: CellCache | None = None,
) -> dict:
    """Every weighting's map for every image, computed once (learned parts loaded once, on
    ``device``). A learned map is kept in ``cache`` under its method's code, its checkpoint's
    bytes and the image's hash, so a rerun does not run the networks again."""
    from pipeline.evaluate.cache import map_identity, map_key

    maps = {}
    for wt in weightings:
        part, keys = None, {}
        if wt.method_cls is not None and cache is not None and cache.folder is not None:
            ident = map_identity(wt, root, device)
            keys = {row["key"]: map_key(ident, row["sha256"]) for row in meta}
            cached = {k: cache.get_array(key) for k, key in keys.items()}
            if all(a is not None for a in cached.values()):
                for k, a in cached.items():
                    maps[weight_key(wt.label, wt.seed, k)] = a
                continue
        if wt.method_cls is not None:
            part = wt.load(root, device)
        for row in meta:
            w = wt.compute(items[row["key"]], part)
            if w is not None:
                maps[weight_key(wt.label, wt.seed, row["key"])] = w
                if row["key"] in keys:
                    cache.put_array(keys[row["key"]], w)
    return maps


def _combos(
    restorer: Restorer, weightings: list[Weighting], case: str, scope: Scope | None = None
) -> list[Weighting]:
    """The weightings a restorer is solved with on ``case``: all for a target (those of its
    scope), ``none`` otherwise; none at all where the scope leaves it off the case."""
    scope = scope or Scope()
    if not scope.solves(restorer.label, case):
        return []
    if not restorer.weighted:
        return [NONE]
    return [w for w in weightings if scope.takes(restorer.label, case, w.label)]


def tuning_keys(
    meta: list[dict],
    restorers: list[Restorer],
    weightings: list[Weighting],
    scope: Scope | None = None,
):
    """Every (restorer, its seed, case, weighting, its seed) whose strength is tuned."""
    operators = {r["case"]: r.get("operator", "identity") for r in meta if r["split"] == "val"}
    return [
        (r.label, r.seed, case, w.label, w.seed)
        for r in restorers
        if r.tuned
        for case in sorted(operators)
        if r.applies(operators[case])
        for w in _combos(r, weightings, case, scope)
    ]


def tuning_jobs(meta: list[dict], todo: dict[tuple, list[float]]) -> list[list[Job]]:
    """Jobs on every val image for each key's new multipliers; one Ray task per (restorer,
    val image, multiplier), holding every weighting."""
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "val"):
        for key, ms in todo.items():
            label, seed, case, weighting, w_seed = key
            if row["case"] != case:
                continue
            for m in ms:
                job = Job("tune", label, seed, weighting, w_seed, float(m), row["key"])
                groups.setdefault((label, seed, row["key"], m), []).append(job)
    return list(groups.values())


def scores_by_key(tuning: list[dict]) -> dict[tuple, dict[float, float]]:
    """(restorer, seed, case, weighting, seed) → multiplier → mean val MPSNR."""
    table: dict[tuple, dict[float, list[float]]] = {}
    for r in tuning:
        case = split_item(r["item"])[1]
        key = (r["restorer"], r["restorer_seed"], case, r["weighting"], r["weighting_seed"])
        table.setdefault(key, {}).setdefault(r["multiplier"], []).append(r["mpsnr"])
    return {k: {m: float(np.mean(v)) for m, v in by_m.items()} for k, by_m in table.items()}


def _best(scores: dict[float, float]) -> float:
    # Ties (to 1e-9 dB): the multiplier nearest 1, the reference strength.
    return max(scores, key=lambda m: (round(scores[m], 9), -abs(math.log(m))))


def next_multipliers(
    scores: dict[float, float], grid: list[float], extended: dict[str, int], p: EvaluateParams
) -> list[float]:
    """The strengths to try next for one key: past the edge the best lies on (one step of the
    grid's spacing at that edge, at most ``p.extend`` per edge); none once it is interior."""
    tried = sorted(scores)
    best = _best(scores)
    g = sorted(grid)
    if len(g) < 2:
        return []
    if best == tried[0] and extended["low"] < p.extend:
        extended["low"] += 1
        return [best / (g[1] / g[0])]
    if best == tried[-1] and extended["high"] < p.extend:
        extended["high"] += 1
        return [best * (g[-1] / g[-2])]
    return []


def refinements(scores: dict[float, float]) -> list[float]:
    """Geometric midpoints between the best multiplier and its tried neighbours."""
    tried = sorted(scores)
    i = tried.index(_best(scores))
    out = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(tried):
            mid = math.sqrt(tried[i] * tried[j])
            if all(abs(math.log(mid / t)) > 1e-9 for t in tried):
                out.append(mid)
    return out


def choose(tuning: list[dict], grid: list[float], limits: dict | None = None) -> dict[tuple, dict]:
    """(restorer, restorer seed, case, weighting, weighting seed) → the chosen multiplier, its
    mean val MPSNR and whether it lies on an edge of what was searched. ``limits``: per key, the
    multipliers that count as edges (the bracket limits); default: the ends of ``grid``."""
    default = (min(grid), max(grid)) if len(grid) > 1 else ()
    chosen = {}
    for key, scores in scores_by_key(tuning).items():
        best = _best(scores)
        edges = (limits or {}).get(key, default)
        chosen[key] = {"multiplier": best, "val_mpsnr": scores[best], "on_edge": best in edges}
    return chosen


def tune(
    p: EvaluateParams, meta: list[dict], restorers, weightings, run_jobs
) -> tuple[list[dict], dict[tuple, dict]]:
    """Strengths tuned on val in rounds (``docs/conventions.md``, "Fair comparison"): the grid,
    then extensions past an edge the best lies on (up to ``p.extend`` per edge), then ``p.refine``
    rounds of midpoints around the best. ``run_jobs(groups, desc)`` solves the jobs."""
    keys = tuning_keys(meta, restorers, weightings, p.narrowed)
    records: list[dict] = []
    extended = {k: {"low": 0, "high": 0} for k in keys}
    todo = {k: list(p.grid) for k in keys}
    refined, rounds = 0, 0
    while todo:
        rounds += 1
        records += run_jobs(tuning_jobs(meta, todo), f"tuning on val ({rounds})")
        scores = scores_by_key(records)
        todo = {}
        for k in keys:
            more = next_multipliers(scores[k], p.grid, extended[k], p)
            if more:
                todo[k] = more
        if not todo and refined < p.refine:
            refined += 1
            todo = {k: ms for k in keys if (ms := refinements(scores[k]))}
    scores = scores_by_key(records)
    limits = {}
    for k in keys:
        tried = sorted(scores[k])
        # An edge counts only where the search could not go further: the bracket limit.
        limits[k] = tuple(
            t
            for t, side in ((tried[0], "low"), (tried[-1], "high"))
            if extended[k][side] >= p.extend and len(p.grid) > 1
        )
    return records, choose(records, p.grid, limits)


def plan_test(
    meta: list[dict],
    restorers: list[Restorer],
    weightings: list[Weighting],
    chosen: dict,
    bands: dict[str, int],
    scope: Scope | None = None,
) -> list[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "test"):
        key, case = row["key"], row["case"]
        band = bands.get(key, -1)
        for r in restorers:
            if not r.applies(row.get("operator", "identity")):
                continue
            for w in _combos(r, weightings, case, scope):
                m = math.nan
                if r.tuned:
                    m = chosen[(r.label, r.seed, case, w.label, w.seed)]["multiplier"]
                job = Job("test", r.label, r.seed, w.label, w.seed, m, key, band)
                groups.setdefault(("test", r.key, key), []).append(job)
    return list(groups.values())


def execute(
    groups: list[list[Job]],
    payload: dict,
    p: EvaluateParams,
    desc: str,
    cache: CellCache | None = None,
    key_of=None,
    start=None,
) -> list[dict]:
    """Fan the groups out as Ray tasks (``p.cpu`` CPUs each); records in submission order.
    Cells found in ``cache`` (under ``key_of(job)``) are read back, not solved; solved ones are
    stored. Each record says whether it was ``cached``. ``start()``, if given, is called before
    the first task is submitted (Ray is started only when a cell must be solved)."""
    import ray
    from tqdm import tqdm

    flat = [job for g in groups for job in g]
    records: list[dict | None] = [None] * len(flat)
    keys: list[str | None] = [None] * len(flat)
    todo: list[list[int]] = []
    first = 0  # index of the group's first job in flat
    for g in groups:
        missing = []
        for i in range(first, first + len(g)):
            if cache is not None and key_of is not None:
                keys[i] = key_of(flat[i])
                hit = cache.get(keys[i])
                if hit is not None:
                    records[i] = {**hit, **asdict(flat[i]), "cached": True}
                    continue
            missing.append(i)
        if missing:
            todo.append(missing)
        first += len(g)
    if todo:
        if start is not None:
            start()
        if p.batch == 1:  # batches need their groups
            todo = spread(todo, _slots(p.cpu))
        ref = ray.put(payload)
        task = ray.remote(num_cpus=p.cpu)(run_group)
        threads = max(1, int(p.cpu))
        futures = [
            task.remote([flat[i] for i in idx], ref, threads, p.precision, p.batch) for idx in todo
        ]
        index = {f: n for n, f in enumerate(futures)}
        pending = list(futures)
        with tqdm(total=sum(map(len, todo)), desc=desc, unit="solve", mininterval=2.0) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                idx = todo[index[done[0]]]
                for i, record in zip(idx, ray.get(done[0]), strict=True):
                    if cache is not None and keys[i] is not None:
                        cache.put(keys[i], record)
                    records[i] = {**record, "cached": False}
                bar.update(len(idx))
    return records  # type: ignore[return-value]


def _slots(cpu: float) -> int:
    """How many tasks of ``cpu`` CPUs the Ray cluster runs at once."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpu, 1e-9)))


def spread(groups: list[list[int]], slots: int, per_slot: int = 4) -> list[list[int]]:
    """Fewer groups than ``per_slot`` × ``slots`` (the later rounds of the strength search: a
    few keys past an edge, where one weak-strength group can hold ten slow solves) are split
    into one job per task, so no worker idles behind a straggler (a task's overhead is
    milliseconds, small next to a solve). Results do not depend on the grouping."""
    if len(groups) >= per_slot * slots:
        return groups
    return [[i] for g in groups for i in g]


class CellKeys:
    """The cache key of a job (:func:`pipeline.evaluate.cache.cell_key`), with the hashes of the
    maps, the items and the restorers' identities computed once."""

    def __init__(self, p: EvaluateParams, meta: list[dict], maps: dict, restorers) -> None:
        self.p = p
        self.items = {r["key"]: f"{r['sha256']}:{r['clean_sha256']}" for r in meta}
        self.operators = {r["key"]: r.get("operator", "identity") for r in meta}
        self.maps = {k: array_sha256(w) for k, w in maps.items()}
        self.restorers = {r.key: r for r in restorers}
        self.identities: dict[tuple, dict] = {}

    def __call__(self, job: Job) -> str:
        from pipeline.evaluate.cache import cell_key

        operator = self.operators[job.item]
        rkey = (job.restorer, job.restorer_seed, job.multiplier, operator)
        if rkey not in self.identities:
            r = self.restorers[(job.restorer, job.restorer_seed)]
            self.identities[rkey] = r.identity(job.multiplier, operator)
        # No map (w = None: unweighted, or a restorer without weighting) is one and the same solve.
        w_hash = self.maps.get(weight_key(job.weighting, job.weighting_seed, job.item), "-")
        return cell_key(
            restorer=self.identities[rkey],
            weight_hash=w_hash,
            item_hash=self.items[job.item],
            multiplier=job.multiplier,
            precision=self.p.precision,
            phase=job.phase,
            band=job.band,
        )


def run_transfer(root: Path, p: EvaluateParams, device: str = "cpu", start=None) -> dict[str, Any]:
    """Tuning and test records, plus what the writers need (weightings, restorers, bands, maps).
    Learned weight maps are computed on ``device``. ``start()`` starts Ray (see :func:`execute`);
    None: Ray is already up."""
    import pandas as pd

    manifest = pd.read_parquet(root / "data" / "degraded" / "manifest.parquet")
    items, meta = load_items(root, manifest, p.cases)
    weightings = plan_weightings(p.weightings, root, p.net_precision, device)
    restorers = plan_restorers(p, root)
    p.narrowed.check_labels([r.label for r in restorers], [w.label for w in weightings])
    log.info(
        "%d weightings × %d restorers × %d cases; %d val and %d test images",
        len(weightings),
        len(restorers),
        len({r["case"] for r in meta}),
        len({r["image_id"] for r in meta if r["split"] == "val"}),
        len({r["image_id"] for r in meta if r["split"] == "test"}),
    )
    cache = CellCache(root / CACHE_DIR if p.cache else None)
    maps = weight_maps(items, meta, weightings, root, device, cache)
    payload = {
        "items": items,
        "weights": maps,
        "restorers": {r.key: r for r in restorers},
        "root": str(root),
    }

    key_of = CellKeys(p, meta, maps, restorers)

    def run_jobs(groups: list[list[Job]], desc: str) -> list[dict]:
        return execute(groups, payload, p, desc, cache, key_of, start)

    tuning, chosen = tune(p, meta, restorers, weightings, run_jobs)

    test_ids = sorted({r["image_id"] for r in meta if r["split"] == "test"})
    shown = set(test_ids[: p.gallery_images])
    bands = {
        r["key"]: _band_to_show(items[r["key"]]["sigma"], items[r["key"]]["mask"])
        for r in meta
        if r["split"] == "test" and r["image_id"] in shown
    }
    test = run_jobs(plan_test(meta, restorers, weightings, chosen, bands, p.narrowed), "test cells")
    log.info(
        "cell cache %s: %d cells read back, %d solved%s",
        cache.folder or "off",
        cache.hits,
        cache.misses,
        f"; {len(cache.corrupt)} corrupt entries solved again" if cache.corrupt else "",
    )
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
        "cache": cache,
        "root": str(root),
    }
