"""The transfer matrix: every (weighting × target × case × test image) cell solved to convergence,
each target's strength tuned on ``val`` first (``docs/science.md`` §4, ``docs/conventions.md``).

1. **Inputs**: the degraded ``val`` and ``test`` images (hashes checked against the manifest),
   the trained nets in ``models/dlw/<set>/seed-<k>.pt`` (every seed).
2. **Weight maps**, once per (weighting, seed, image), in the driver: they are functions of the
   noisy image only (the oracle excepted) and cheap next to the solves.
3. **Tuning** (Ray tasks): each target × weighting × seed × multiplier of ``grid`` on every
   ``val`` image; the multiplier with the best mean val MPSNR is chosen per
   (target, case, weighting, seed) (ties: the one nearest 1), flagged when on the grid's edge.
4. **Test** (Ray tasks): every cell at its chosen multiplier, plus the peer baselines.

Ray tasks: tuning, one per (target, case, val image, multiplier); test, one per (target, case,
test image); BM4D, one per (case, test image); each runs its weightings' solves in turn, and
there are enough of them to keep 2 CPUs busy. The images and the maps travel once through the
object store. The records come back to the driver, which is
the only writer (Parquet, MLflow).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.cells import Job, run_group, weight_key
from pipeline.evaluate.params import EvaluateParams
from pipeline.io import array_sha256, load_npy, load_npz, safe_name

log = logging.getLogger(__name__)

__all__ = [
    "Checkpoint",
    "check_targets",
    "choose",
    "find_checkpoints",
    "load_items",
    "run_transfer",
]


@dataclass(frozen=True)
class Checkpoint:
    source_set: str
    seed: int
    path: str  # relative to the repository root

    @property
    def weighting(self) -> str:
        return f"dlw:{self.source_set}"


def check_targets(p: EvaluateParams, source: str = "params.yaml") -> None:
    """Every target's overrides build a model; an unknown key or bad value is named by its full
    key in ``source`` (``evaluate.targets.tv.tol``, ``evaluate.tv_l1.foo``)."""
    from pipeline.models import MODELS, build_model
    from pipeline.schema import ConfigError, parse_dataclass

    sections = {f"evaluate.targets.{name}": (name, o) for name, o in p.targets.items()}
    sections["evaluate.tv_l1"] = ("tv_l1", p.tv_l1)
    for where, (name, overrides) in sections.items():
        try:
            parse_dataclass(MODELS[name][1], overrides, where)
            build_model(name, **overrides)
        except (ConfigError, ValueError) as exc:
            text = str(exc)
            if not text.startswith(where):
                text = f"{where}: {text}"
            raise ConfigError(f"{source}: {text}") from None


def find_checkpoints(root: Path, only: list[str] | None = None) -> list[Checkpoint]:
    """Every ``models/dlw/<set>/seed-<k>.pt`` (``best.pt`` is a copy of one of them)."""
    base = root / "models" / "dlw"
    found = []
    for path in sorted(base.glob("*/seed-*.pt")):
        name = safe_name(path.parent.name, "source set")
        try:
            seed = int(path.stem.removeprefix("seed-"))
        except ValueError:
            raise ValueError(f"{path}: expected seed-<k>.pt") from None
        if only is None or name in only:
            found.append(Checkpoint(name, seed, str(path.relative_to(root))))
    if only is not None:
        missing = sorted(set(only) - {c.source_set for c in found})
        if missing:
            raise ValueError(f"evaluate.source_sets: no trained net in {base} for {missing}")
    return found


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


def weight_maps(items: dict, meta: list[dict], p: EvaluateParams, nets: dict) -> dict:
    """Every weighting's map for every image, computed once."""
    from pipeline.evaluate.weightings import compute_weights

    maps = {}
    for row in meta:
        item = items[row["key"]]
        for kind in p.weightings:
            if kind == "unweighted":
                continue  # the solvers take w = None
            if kind == "dlw":
                for (weighting, seed), net in nets.items():
                    w = compute_weights("dlw", item["noisy"], net=net)
                    maps[weight_key(weighting, seed, row["key"])] = w
            else:
                w = compute_weights(kind, item["noisy"], sigma=item["sigma"], mask=item["mask"])
                maps[weight_key(kind, -1, row["key"])] = w
    return maps


def weightings_list(p: EvaluateParams, checkpoints: list[Checkpoint]) -> list[tuple[str, int]]:
    out = []
    for kind in p.weightings:
        if kind == "dlw":
            out.extend((c.weighting, c.seed) for c in checkpoints)
        else:
            out.append((kind, -1))
    return out


def plan_tuning(p: EvaluateParams, meta: list[dict], weightings: list[tuple[str, int]]):
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "val"):
        for target, method, ws in _targets(p, weightings):
            for weighting, seed in ws:
                for m in p.grid:
                    job = Job("tune", method, target, weighting, seed, float(m), row["key"])
                    groups.setdefault(("tune", target, row["key"], m), []).append(job)
    return list(groups.values())


def _targets(p: EvaluateParams, weightings: list[tuple[str, int]]):
    """(target, method, weightings) triples: the weighted targets, then tv_l1 (unweighted)."""
    out = [(t, "dlw", weightings) for t in p.targets]
    if "tv_l1" in p.baselines:
        out.append(("tv_l1", "tv_l1", [("unweighted", -1)]))
    return out


def choose(tuning: list[dict], grid: list[float]) -> dict[tuple, dict]:
    """(method, target, case, weighting, seed) → the chosen multiplier, its mean val MPSNR and
    whether it lies on the grid's edge."""
    table: dict[tuple, dict[float, list[float]]] = {}
    for r in tuning:
        case = r["item"].split("/")[1]
        key = (r["method"], r["target"], case, r["weighting"], r["seed"])
        table.setdefault(key, {}).setdefault(r["multiplier"], []).append(r["mpsnr"])
    edges = (min(grid), max(grid)) if len(grid) > 1 else ()
    chosen = {}
    for key, by_m in table.items():
        scores = {m: float(np.mean(v)) for m, v in by_m.items()}
        best = max(scores, key=lambda m: (round(scores[m], 9), -abs(math.log(m))))
        chosen[key] = {"multiplier": best, "val_mpsnr": scores[best], "on_edge": best in edges}
    return chosen


def plan_test(
    p: EvaluateParams,
    meta: list[dict],
    weightings: list[tuple[str, int]],
    chosen: dict,
    bands: dict[str, int],
) -> list[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for row in (r for r in meta if r["split"] == "test"):
        key, case = row["key"], row["case"]
        band = bands.get(key, -1)
        for target, method, ws in _targets(p, weightings):
            for weighting, seed in ws:
                m = chosen[(method, target, case, weighting, seed)]["multiplier"]
                job = Job("test", method, target, weighting, seed, m, key, band)
                groups.setdefault(("test", target, key), []).append(job)
        for name in (b for b in p.baselines if b in ("bm4d", "bm3d")):
            job = Job("test", name, name, "none", -1, math.nan, key, band)
            groups.setdefault(("test", name, key), []).append(job)
    return list(groups.values())


def execute(groups: list[list[Job]], payload: dict, p: EvaluateParams, desc: str) -> list[dict]:
    """Fan the groups out as Ray tasks (``p.cpu`` CPUs each); records in submission order."""
    import ray
    from tqdm import tqdm

    overrides = {**p.targets, "tv_l1": p.tv_l1}
    ref = ray.put(payload)
    task = ray.remote(num_cpus=p.cpu)(run_group)
    threads = max(1, int(p.cpu))
    futures = [task.remote(g, ref, overrides, threads, p.precision) for g in groups]
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
    """Tuning and test records, plus what the writers need (checkpoints, bands, maps)."""
    import pandas as pd

    from pipeline.train.checkpoint import load_dlwnet

    manifest = pd.read_parquet(root / "data" / "degraded" / "manifest.parquet")
    items, meta = load_items(root, manifest, p.cases)
    checkpoints = find_checkpoints(root, p.source_sets) if "dlw" in p.weightings else []
    if "dlw" in p.weightings and not checkpoints:
        raise ValueError(f"{root / 'models' / 'dlw'}: no trained nets; run the train stage")
    nets = {(c.weighting, c.seed): load_dlwnet(root / c.path).eval() for c in checkpoints}
    weightings = weightings_list(p, checkpoints)
    log.info(
        "%d weightings × %d targets × %d cases; %d val and %d test images",
        len(weightings),
        len(p.targets),
        len({r["case"] for r in meta}),
        len({r["image_id"] for r in meta if r["split"] == "val"}),
        len({r["image_id"] for r in meta if r["split"] == "test"}),
    )
    maps = weight_maps(items, meta, p, nets)
    payload = {"items": items, "weights": maps}

    tune_groups = plan_tuning(p, meta, weightings)
    tuning = execute(tune_groups, payload, p, "tuning on val")
    chosen = choose(tuning, p.grid)

    test_ids = sorted({r["image_id"] for r in meta if r["split"] == "test"})
    shown = set(test_ids[: p.gallery_images])
    bands = {
        r["key"]: _band_to_show(items[r["key"]]["sigma"], items[r["key"]]["mask"])
        for r in meta
        if r["split"] == "test" and r["image_id"] in shown
    }
    test = execute(plan_test(p, meta, weightings, chosen, bands), payload, p, "test cells")
    return {
        "tuning": tuning,
        "test": test,
        "chosen": chosen,
        "meta": meta,
        "items": items,
        "maps": maps,
        "bands": bands,
        "checkpoints": checkpoints,
        "overrides": {**p.targets, "tv_l1": p.tv_l1},
    }


def case_params_of(meta: list[dict]) -> dict[str, dict]:
    return {r["case"]: json.loads(r["case_params"]) for r in meta}
