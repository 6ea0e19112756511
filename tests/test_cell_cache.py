"""The per-cell cache, the strength search and the batched solves of the evaluate stage.

Cache: entries round-trip bit-identically, a corrupt entry is detected by its hash and solved
again; through the real engine (Ray tasks), adding a weighting solves only its cells, changing a
restorer's parameter only that restorer's cells, and results with and without the cache are
identical. Strength search: the bracket extends past an edge until the best is interior, then
refines; a best value at the bracket limit is flagged. Batches equal per-cell solves bitwise."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ray_fixtures import ray_local  # noqa: F401

from pipeline.evaluate.cache import CellCache
from pipeline.evaluate.cells import Job, run_group, weight_key
from pipeline.evaluate.params import EvaluateParams
from pipeline.evaluate.restorers import Restorer
from pipeline.evaluate.transfer import (
    CellKeys,
    choose,
    execute,
    next_multipliers,
    refinements,
    spread,
    tune,
)
from pipeline.evaluate.weightings import Weighting, handcrafted_weights, oracle_weights
from pipeline.io import array_sha256
from pipeline.schema import parse_dataclass


def item(seed: int, c: int = 6, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    clean = np.stack([0.5 + 0.3 * np.sin(2 * xx + k + seed) * np.cos(3 * yy) for k in range(c)])
    clean = clean.astype(np.float32)
    sigma = np.full_like(clean, 0.08)
    noisy = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    mask = np.zeros(clean.shape, dtype=bool)
    mask[:, :, 3] = True  # a dead column
    noisy[mask] = 0.0
    return {"clean": clean, "noisy": noisy, "sigma": sigma, "mask": mask}


# --- the cache itself -----------------------------------------------------------------------


def test_entries_round_trip_bit_identically(tmp_path):
    cache = CellCache(tmp_path)
    band = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    record = {"mpsnr": 1 / 3, "primal_residual": math.nan, "converged": True, "x_band": band}
    cache.put("ab" * 32, record)
    back = cache.get("ab" * 32)
    assert back["mpsnr"] == record["mpsnr"] and math.isnan(back["primal_residual"])
    assert back["x_band"].dtype == np.float32 and np.array_equal(back["x_band"], band)
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get("cd" * 32) is None and cache.misses == 1


@pytest.mark.parametrize("damage", ["edit", "truncate", "garbage"])
def test_a_corrupt_entry_is_detected_deleted_and_not_used(tmp_path, damage):
    cache = CellCache(tmp_path)
    key = "ef" * 32
    cache.put(key, {"mpsnr": 20.0})
    path = tmp_path / key[:2] / f"{key}.json"
    raw = path.read_bytes()
    path.write_bytes(
        {
            "edit": raw.replace(b"20.0", b"21.0"),
            "truncate": raw[: len(raw) // 2],
            "garbage": b"\x00\xff not json",
        }[damage]
    )
    assert cache.get(key) is None
    assert cache.corrupt == [str(path)] and not path.exists()


def test_no_folder_means_no_cache(tmp_path):
    cache = CellCache(None)
    cache.put("00" * 32, {"mpsnr": 1.0})
    assert cache.get("00" * 32) is None and cache.misses == 1


# --- the strength search --------------------------------------------------------------------


def peaked(peak: float):
    """A fake solver: val MPSNR = 30 − (log m − log peak)², one record per val image."""

    def run_jobs(groups, desc):
        return [
            {
                **{k: getattr(j, k) for k in j.__dataclass_fields__},
                "mpsnr": 30.0 - (math.log(j.multiplier) - math.log(peak)) ** 2,
            }
            for g in groups
            for j in g
        ]

    return run_jobs


META = [
    {"split": "val", "case": "c", "key": "val/c/a"},
    {"split": "val", "case": "c", "key": "val/c/b"},
]
TV = Restorer("tv", "model", role="target", tuned=True)


def test_the_bracket_extends_until_interior_then_refines():
    p = EvaluateParams(grid=[0.25, 1.0, 4.0], extend=3, refine=1)
    records, chosen = tune(p, META, [TV], [Weighting("unweighted")], peaked(16.0))
    ((key, pick),) = chosen.items()
    assert key == ("tv", -1, "c", "unweighted", -1)
    tried = sorted({r["multiplier"] for r in records})
    # 0.25, 1, 4 → 16 (edge) → 64 (16 interior) → midpoints 8 and 32.
    assert tried == pytest.approx([0.25, 1.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    assert pick["multiplier"] == pytest.approx(16.0) and pick["on_edge"] is False
    assert len(records) == 2 * len(tried)  # every multiplier on both val images


def test_a_best_value_at_the_bracket_limit_is_flagged():
    p = EvaluateParams(grid=[0.25, 1.0, 4.0], extend=1, refine=0)
    _, chosen = tune(p, META, [TV], [Weighting("unweighted")], peaked(1000.0))
    (pick,) = chosen.values()
    assert pick["multiplier"] == pytest.approx(16.0) and pick["on_edge"] is True
    _, low = tune(p, META, [TV], [Weighting("unweighted")], peaked(1e-4))
    assert next(iter(low.values()))["multiplier"] == pytest.approx(0.25 / 4)


def test_step_rules():
    p = EvaluateParams(extend=2)
    ext = {"low": 0, "high": 0}
    assert next_multipliers({0.5: 1.0, 1.0: 2.0, 2.0: 3.0}, [0.5, 1.0, 2.0], ext, p) == [4.0]
    assert next_multipliers({0.5: 3.0, 1.0: 2.0, 2.0: 1.0}, [0.5, 1.0, 2.0], ext, p) == [0.25]
    assert ext == {"low": 1, "high": 1}
    assert next_multipliers({0.5: 1.0, 1.0: 2.0, 2.0: 1.0}, [0.5, 1.0, 2.0], ext, p) == []
    assert refinements({1.0: 1.0, 4.0: 2.0, 16.0: 1.0}) == pytest.approx([2.0, 8.0])
    # the old interface: the grid's ends are the edges
    records = [
        {"restorer": "tv", "restorer_seed": -1, "weighting": "w", "weighting_seed": -1,
         "item": "val/c/a", "multiplier": m, "mpsnr": s}
        for m, s in ((0.5, 1.0), (1.0, 2.0), (2.0, 3.0))
    ]  # fmt: skip
    assert choose(records, [0.5, 1.0, 2.0])[("tv", -1, "c", "w", -1)]["on_edge"] is True


# --- batches ----------------------------------------------------------------------------------


def test_batched_solves_equal_per_cell_solves_bitwise():
    items = {f"test/c/{i}": item(i) for i in range(3)}
    weights = {
        weight_key("handcrafted", -1, k): handcrafted_weights(v["noisy"]) for k, v in items.items()
    }
    r = Restorer("tv", "model", role="target", tuned=True, overrides={"tol": 1e-4})
    payload = {"items": items, "weights": weights, "restorers": {r.key: r}}
    jobs = [
        Job("test", "tv", -1, w, -1, 1.0, k) for w in ("unweighted", "handcrafted") for k in items
    ]
    one = run_group(jobs, payload, 1, "float32", batch=1)
    many = run_group(jobs, payload, 1, "float32", batch=8)
    for a, b in zip(one, many, strict=True):
        assert a["mpsnr"] == b["mpsnr"] and a["iterations"] == b["iterations"]


# --- through the engine (Ray tasks) -----------------------------------------------------------


def engine(tmp_path, weightings: list[str], tv_tol: float = 1e-3, cache: bool = True):
    """Tuning and test cells of tv and nn on 2 val + 2 test images, as run_transfer runs them."""
    from pipeline.evaluate.transfer import NONE, plan_test

    items = {
        f"{s}/c/{i}": item(i + (10 if s == "test" else 0))
        for s in ("val", "test")
        for i in range(2)
    }
    meta = [
        {"split": k.split("/")[0], "case": "c", "key": k, "image_id": k.split("/")[2],
         "sha256": array_sha256(v["noisy"], v["sigma"], v["mask"]),
         "clean_sha256": array_sha256(v["clean"])}
        for k, v in items.items()
    ]  # fmt: skip
    ws = [Weighting(w, oracle_informed=w == "oracle") for w in weightings]
    maps = {}
    for k, v in items.items():
        if "handcrafted" in weightings:
            maps[weight_key("handcrafted", -1, k)] = handcrafted_weights(v["noisy"])
        if "oracle" in weightings:
            maps[weight_key("oracle", -1, k)] = oracle_weights(
                v["sigma"], v["mask"], v["noisy"].shape
            )
    p = parse_dataclass(
        EvaluateParams,
        {"restorers": {"tv": {"tol": tv_tol}, "nn": {"tol": 1e-3}}, "grid": [0.5, 2.0],
         "extend": 1, "refine": 0, "cache": cache},
        "evaluate",
    )  # fmt: skip
    restorers = [
        Restorer("tv", "model", role="target", tuned=True, overrides={"tol": tv_tol}),
        Restorer("nn", "model", role="target", tuned=True, overrides={"tol": 1e-3}),
    ]
    payload = {"items": items, "weights": maps, "restorers": {r.key: r for r in restorers}}
    store = CellCache(tmp_path / "cells" if cache else None)
    keys = CellKeys(p, meta, maps, restorers)

    def run_jobs(groups, desc):
        return execute(groups, payload, p, desc, store, keys)

    tuning, chosen = tune(p, meta, restorers, ws, run_jobs)
    assert NONE.label == "none"
    test = run_jobs(plan_test(meta, restorers, ws, chosen, {}), "test")
    return tuning + test, store


def solved(records, store) -> list[tuple]:
    return sorted((r["restorer"], r["weighting"]) for r in records if not r["cached"])


def test_the_cache_solves_only_what_changed(tmp_path, ray_local):  # noqa: F811
    first, store = engine(tmp_path, ["unweighted", "handcrafted"])
    assert store.hits == 0 and store.misses == len(first)
    again, store = engine(tmp_path, ["unweighted", "handcrafted"])
    assert store.misses == 0 and all(r["cached"] for r in again)
    for a, b in zip(first, again, strict=True):
        assert (a["mpsnr"], a["multiplier"], a["iterations"]) == (
            b["mpsnr"],
            b["multiplier"],
            b["iterations"],
        )

    # One more weighting: only its cells are solved.
    more, store = engine(tmp_path, ["unweighted", "handcrafted", "oracle"])
    assert {w for _, w in solved(more, store)} == {"oracle"}
    assert store.misses == sum(r["weighting"] == "oracle" for r in more)

    # One restorer's parameter: only that restorer's cells are solved.
    changed, store = engine(tmp_path, ["unweighted", "handcrafted", "oracle"], tv_tol=5e-4)
    assert {r for r, _ in solved(changed, store)} == {"tv"}
    assert store.hits == sum(r["restorer"] == "nn" for r in changed)


def test_results_are_identical_with_and_without_the_cache(tmp_path, ray_local):  # noqa: F811
    cold, _ = engine(tmp_path / "a", ["unweighted", "handcrafted"])
    # Corrupt one entry: it is detected and solved again, with the same numbers.
    entry = next((tmp_path / "a" / "cells").rglob("*.json"))
    entry.write_bytes(entry.read_bytes()[:-20])
    warm, store = engine(tmp_path / "a", ["unweighted", "handcrafted"])
    assert store.corrupt == [str(entry)] and store.misses == 1
    plain, _ = engine(tmp_path / "b", ["unweighted", "handcrafted"], cache=False)
    for a, b, c in zip(cold, warm, plain, strict=True):
        assert a["mpsnr"] == b["mpsnr"] == c["mpsnr"]
        assert a["multiplier"] == b["multiplier"] == c["multiplier"]


def test_maps_round_trip_and_a_corrupt_map_is_not_used(tmp_path):
    cache = CellCache(tmp_path / "cells")
    w = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    cache.put_array("12" * 32, w)
    back = cache.get_array("12" * 32)
    assert back.dtype == np.float32 and np.array_equal(back, w)
    path = tmp_path / "maps" / "12" / f"{'12' * 32}.npz"
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF  # one flipped byte inside the archive
    path.write_bytes(bytes(raw))
    assert cache.get_array("12" * 32) is None and cache.corrupt == [str(path)]
    assert not path.exists() and CellCache(None).get_array("12" * 32) is None


def test_few_groups_are_spread_one_job_per_task():
    many = [[i, i + 100] for i in range(8)]
    assert spread(many, slots=2) is many  # ≥ 4 per slot: kept as they are
    few = [[0, 1, 2], [3], [4, 5]]
    assert spread(few, slots=2) == [[0], [1], [2], [3], [4], [5]]
    assert spread(few, slots=1, per_slot=3) is few


def test_method_hash_covers_the_code_a_method_declares():
    """A learned restorer's cells are keyed by its package and the code it declares
    (Method.code): an edit to a declared file changes the key."""
    import pipeline.methods.alr as package
    from pipeline.evaluate.cache import method_hash, source_hash
    from pipeline.methods.alr import ALR

    assert "evaluate/operator_baselines.py" in ALR.code
    folder = Path(package.__file__).parent
    assert method_hash(ALR) == source_hash(folder, *ALR.code)
    assert method_hash(ALR) != source_hash(folder)
