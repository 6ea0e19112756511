"""The evaluate stage's pieces: params, the registries behind the matrix's rows and columns,
tuning choice, trained-part discovery and planning, one cell against a direct solve, and the
results table's schema."""

import math

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, parse_params
from pipeline.evaluate.cells import NO_WEIGHTING, Job, run_group, run_job, weight_key
from pipeline.evaluate.params import BUILTIN_WEIGHTINGS, EvaluateParams
from pipeline.evaluate.restorers import (
    Restorer,
    check_restorers,
    classical_restorers,
    plan_restorers,
)
from pipeline.evaluate.transfer import choose
from pipeline.evaluate.weightings import plan_weightings
from pipeline.methods.base import LearnedPart, find_parts
from pipeline.models import MODELS, build_model
from pipeline.models.strength import reference_strengths, scaled_params, strength_fields


def rx(name):
    """``name`` as a regular expression matching it literally."""
    return name.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")


# ------------------------------------------------------------------ names and params


def test_restorer_names_come_from_the_registries():
    from pipeline.degrade.operators import OPERATORS
    from pipeline.evaluate import operator_baselines as OB
    from pipeline.evaluate import weightings as W
    from pipeline.evaluate.baselines import BASELINES
    from pipeline.evaluate.restorers import OPERATOR_BASELINES

    classical = classical_restorers()
    assert list(classical) == [*MODELS, *BASELINES, *OB.OPERATOR_BASELINES]
    for name, (cls, _) in MODELS.items():
        facts = {"role": cls.role, "tuned": True, "oracle_informed": False}
        facts["operators"] = cls.operators
        assert classical[name] == facts
        assert strength_fields(name)[0]  # every tuned model has a strength to scale
    assert classical["tv"]["role"] == "target" and classical["tv_l1"]["role"] == "peer"
    assert classical["tv"]["operators"] == ("identity", "blur", "downsample", "inpaint")
    assert classical["tvs"]["operators"] == ("identity", "inpaint")  # ill-posed for blur, SR
    for name in BASELINES:
        facts = {
            "role": "peer",
            "tuned": False,
            "oracle_informed": True,
            "operators": ("identity",),
        }
        assert classical[name] == facts
    # the light table evaluate plans with names the operator types the baselines accept
    kinds = {"blur": "blur", "downsampling": "downsample", "inpainting": "inpaint"}
    for name, types in OB.OPERATOR_BASELINES.items():
        names = tuple(kinds[k] for k, cls in OPERATORS.items() if cls in types)
        assert OPERATOR_BASELINES[name][0] == names
    assert classical["wiener"]["oracle_informed"] and not classical["fill"]["oracle_informed"]
    # parsing params must not import numpy-heavy modules: the built-in names are copied
    assert tuple(W.BUILTIN) == BUILTIN_WEIGHTINGS
    assert set(EvaluateParams().restorers) <= set(classical)
    from pipeline.methods.registry import providing

    assert set(EvaluateParams().weightings) <= {*BUILTIN_WEIGHTINGS, *providing("weighting")}


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"weightings": ["learned"]}, "evaluate.weightings[0]"),
        ({"weightings": ["oracle", "dlx"]}, "evaluate.weightings[1]"),
        ({"weightings": ["oracle", "oracle"]}, "evaluate.weightings"),
        ({"weightings": []}, "evaluate.weightings"),
        ({"restorers": {}}, "evaluate.restorers"),
        ({"restorers": {"dlw": {"tol": 1e-3}}}, "evaluate.restorers.dlw"),
        ({"grid": [1.0, -2.0]}, "evaluate.grid[1]"),
        ({"grid": []}, "evaluate.grid"),
        ({"cpu": 0}, "evaluate.cpu"),
        ({"gallery": 3}, "evaluate.gallery"),
        # the sections the restorers mapping replaced are unknown keys now
        ({"targets": {"tv": {}}}, "evaluate.targets: unknown key"),
        ({"baselines": ["bm4d"]}, "evaluate.baselines: unknown key"),
        ({"tv_l1": {"tol": 1e-3}}, "evaluate.tv_l1: unknown key"),
        ({"source_sets": ["nn"]}, "evaluate.source_sets: unknown key"),
    ],
)
def test_bad_evaluate_params_name_the_key(section, key):
    with pytest.raises(ConfigError, match=rx(key)):
        parse_params({"evaluate": section})


@pytest.mark.parametrize(
    "section",
    [{"weightings": ["dlw:../nn"]}, {"restorers": {"dlw:a b": {}}}],
)
def test_an_unsafe_variant_name_is_a_config_error(section):
    """A variant becomes a folder name under models/<method>/: no path may leave it."""
    with pytest.raises(ConfigError, match="not a safe file name"):
        parse_params({"evaluate": section})


def test_learned_weightings_are_accepted_by_method_and_variant():
    p = parse_params({"evaluate": {"weightings": ["unweighted", "dlw", "dlw:nn+tv"]}}).evaluate
    assert p.weightings == ["unweighted", "dlw", "dlw:nn+tv"]


@pytest.mark.parametrize(
    ("restorers", "message"),
    [
        ({"tv": {"lamda": 0.1}}, r"params\.yaml: evaluate\.restorers\.tv\.lamda: unknown"),
        ({"tv": {"tol": "x"}}, r"params\.yaml: evaluate\.restorers\.tv\.tol = 'x'"),
        ({"tv_l1": {"foo": 1}}, r"params\.yaml: evaluate\.restorers\.tv_l1\.foo: unknown key"),
        ({"tvx": {}}, r"params\.yaml: evaluate\.restorers\.tvx: unknown restorer 'tvx'"),
        ({"dlw": {}}, r"params\.yaml: evaluate\.restorers\.dlw: method 'dlw' provides no"),
        ({"dlw:nn": {}}, r"params\.yaml: evaluate\.restorers\.dlw:nn: method 'dlw' provides no"),
        ({"bm4d": {"sigma": 0.1}}, r"params\.yaml: evaluate\.restorers\.bm4d = .*no overrides"),
    ],
)
def test_restorers_are_checked_by_their_registry_under_their_own_key(restorers, message):
    with pytest.raises(ConfigError, match=message):
        check_restorers(EvaluateParams(restorers={"nn": {}, **restorers}))
    check_restorers(EvaluateParams())  # the defaults build


def test_scaled_params_scale_the_main_strength():
    # ×4 the strength, ×2 the ADMM penalties (√m: the path of the iterations, not the minimiser)
    tv = {"lam": 4.0 * reference_strengths("tv")["lam"], "mu1": 0.2, "mu2": 0.2, "mu_max": 6.0}
    assert scaled_params("tv", 4.0) == tv
    nn = reference_strengths("nn")["lam_factor"]
    assert scaled_params("nn", 4.0) == {"lam_factor": nn / 4.0}  # λ weighs the fidelity
    ref = reference_strengths("lrtv")
    half = math.sqrt(0.5)
    lrtv = {**{k: 0.5 * v for k, v in ref.items()}, "mu0": 0.1 * half, "mu_max": 3.0 * half}
    assert scaled_params("lrtv", 0.5) == lrtv


# ------------------------------------------------------------------ tuning choice


def rec(restorer, weighting, m, value, case="mixture", image="a", r_seed=-1, w_seed=-1):
    return {
        "restorer": restorer,
        "restorer_seed": r_seed,
        "weighting": weighting,
        "weighting_seed": w_seed,
        "multiplier": m,
        "item": f"val/{case}/{image}",
        "mpsnr": value,
    }


def test_choose_takes_the_best_mean_over_val_images_and_flags_edges():
    grid = [0.25, 1.0, 4.0]
    tuning = [
        rec("tv", "oracle", 0.25, 20.0, image="a"),
        rec("tv", "oracle", 0.25, 30.0, image="b"),  # mean 25.0: best
        rec("tv", "oracle", 1.0, 24.0, image="a"),
        rec("tv", "oracle", 1.0, 24.5, image="b"),
        rec("tv", "oracle", 4.0, 10.0, image="a"),
        rec("tv", "oracle", 4.0, 10.0, image="b"),
        rec("tv", "unweighted", 0.25, 21.0),
        rec("tv", "unweighted", 1.0, 22.0),  # interior
        rec("tv", "unweighted", 4.0, 21.5),
        rec("nn", "unweighted", 0.25, 19.0),  # a tie: the multiplier nearest 1 wins
        rec("nn", "unweighted", 1.0, 19.0),
        rec("nn", "unweighted", 4.0, 18.0),
    ]
    chosen = choose(tuning, grid)
    oracle = chosen[("tv", -1, "mixture", "oracle", -1)]
    assert oracle == {"multiplier": 0.25, "val_mpsnr": 25.0, "on_edge": True}
    assert chosen[("tv", -1, "mixture", "unweighted", -1)]["on_edge"] is False
    assert chosen[("tv", -1, "mixture", "unweighted", -1)]["multiplier"] == 1.0
    assert chosen[("nn", -1, "mixture", "unweighted", -1)]["multiplier"] == 1.0
    # a one-value grid has no edge
    one = choose([rec("tv", "oracle", 1.0, 3.0)], [1.0])
    assert one[("tv", -1, "mixture", "oracle", -1)]["on_edge"] is False


def test_choose_tunes_each_seed_and_case_on_its_own():
    grid = [0.25, 1.0, 4.0]
    tuning = [
        rec("tv", "dlw:nn", 0.25, 30.0, w_seed=0),
        rec("tv", "dlw:nn", 4.0, 20.0, w_seed=0),
        rec("tv", "dlw:nn", 0.25, 20.0, w_seed=1),
        rec("tv", "dlw:nn", 4.0, 30.0, w_seed=1),
        rec("tv", "dlw:nn", 0.25, 20.0, w_seed=0, case="stripe"),
        rec("tv", "dlw:nn", 1.0, 31.0, w_seed=0, case="stripe"),
        rec("rx:a", "none", 0.25, 10.0, r_seed=2),
        rec("rx:a", "none", 1.0, 12.0, r_seed=2),
        rec("rx:a", "none", 0.25, 14.0, r_seed=3),
        rec("rx:a", "none", 1.0, 12.0, r_seed=3),
    ]
    chosen = choose(tuning, grid)
    assert chosen[("tv", -1, "mixture", "dlw:nn", 0)]["multiplier"] == 0.25
    assert chosen[("tv", -1, "mixture", "dlw:nn", 1)]["multiplier"] == 4.0
    assert chosen[("tv", -1, "stripe", "dlw:nn", 0)] == {
        "multiplier": 1.0,
        "val_mpsnr": 31.0,
        "on_edge": False,
    }
    assert chosen[("rx:a", 2, "mixture", "none", -1)]["multiplier"] == 1.0
    assert chosen[("rx:a", 3, "mixture", "none", -1)]["val_mpsnr"] == 14.0
    assert len(chosen) == 5


# ------------------------------------------------------------------ trained parts and plans


def fake_parts(root, variants=("nn", "nn+tv"), seeds=(0, 1)):
    """Empty ``models/dlw/<variant>/seed-<k>.pt`` files (and a ``best.pt`` copy): planning only
    lists them."""
    for name in variants:
        for k in seeds:
            p = root / "models" / "dlw" / name / f"seed-{k}.pt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        (root / "models" / "dlw" / name / "best.pt").write_bytes(b"")


def test_find_parts_all_seeds_and_missing_variants(tmp_path):
    fake_parts(tmp_path)
    found = find_parts(tmp_path, "dlw")
    assert [(c.variant, c.seed) for c in found] == [
        ("nn", 0),
        ("nn", 1),
        ("nn+tv", 0),
        ("nn+tv", 1),
    ]
    assert found[2] == LearnedPart("dlw", "nn+tv", 0, "models/dlw/nn+tv/seed-0.pt")
    assert found[2].label == "dlw:nn+tv"
    assert len(find_parts(tmp_path, "dlw", ["nn"])) == 2
    with pytest.raises(ValueError, match=r"tvs"):
        find_parts(tmp_path, "dlw", ["nn", "tvs"])
    assert find_parts(tmp_path, "other") == []


def test_plan_weightings_expands_learned_ones_to_every_variant_and_seed(tmp_path):
    from pipeline.methods.dlw import DLW

    fake_parts(tmp_path)
    plan = plan_weightings(["unweighted", "oracle", "handcrafted", "dlw"], tmp_path)
    assert [(w.label, w.seed) for w in plan] == [
        ("unweighted", -1),
        ("oracle", -1),
        ("handcrafted", -1),
        ("dlw:nn", 0),
        ("dlw:nn", 1),
        ("dlw:nn+tv", 0),
        ("dlw:nn+tv", 1),
    ]
    assert [w.oracle_informed for w in plan] == [False, True, False, False, False, False, False]
    assert all(w.method_cls is None and w.method == "" for w in plan[:3])
    learned = plan[5]
    assert (learned.method, learned.variant, learned.path) == (
        "dlw",
        "nn+tv",
        "models/dlw/nn+tv/seed-0.pt",
    )
    assert learned.method_cls is DLW
    one = plan_weightings(["dlw:nn", "oracle"], tmp_path)
    assert [(w.label, w.variant, w.seed) for w in one] == [
        ("dlw:nn", "nn", 0),
        ("dlw:nn", "nn", 1),
        ("oracle", "", -1),
    ]
    with pytest.raises(ValueError, match=r"tvs"):
        plan_weightings(["dlw:tvs"], tmp_path)
    with pytest.raises(ValueError, match=r"no trained dlw; run train@dlw"):
        plan_weightings(["oracle", "dlw"], tmp_path / "empty")


def test_plan_restorers_keeps_params_order_and_roles(tmp_path):
    fake_parts(tmp_path)
    p = EvaluateParams(
        restorers={"bm4d": {}, "tv": {"boundary": "neumann", "tol": 1e-3}, "tv_l1": {"tol": 1e-3}}
    )
    plan = plan_restorers(p, tmp_path)
    assert [r.label for r in plan] == ["bm4d", "tv", "tv_l1"]
    assert [r.kind for r in plan] == ["baseline", "model", "model"]
    assert [r.role for r in plan] == ["peer", "target", "peer"]
    assert [r.tuned for r in plan] == [False, True, True]
    assert [r.oracle_informed for r in plan] == [True, False, False]
    assert [r.weighted for r in plan] == [False, True, False]  # only a target takes weightings
    assert [r.key for r in plan] == [("bm4d", -1), ("tv", -1), ("tv_l1", -1)]
    assert plan[1].overrides == {"boundary": "neumann", "tol": 1e-3}
    tasks = ("identity", "blur", "downsample", "inpaint")
    assert plan[1] == Restorer(
        "tv",
        "model",
        role="target",
        tuned=True,
        overrides={"boundary": "neumann", "tol": 1e-3},
        operators=tasks,
    )
    assert [r.applies("blur") for r in plan] == [False, True, False]  # TV takes A, BM4D no
    assert plan[0].reference_strengths() == {}  # BM4D has no strength to tune
    assert plan[2].reference_strengths() == reference_strengths("tv_l1")
    defaults = plan_restorers(EvaluateParams(), tmp_path)
    assert [r.label for r in defaults] == list(EvaluateParams().restorers)


# ------------------------------------------------------------------ cells


def smooth_item(seed=0, c=6, h=16, w=16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / h
    clean = np.stack([0.5 + 0.3 * np.sin(2 * xx + k) * np.cos(3 * yy) for k in range(c)])
    clean = clean.astype(np.float32)
    sigma = np.full_like(clean, 0.1)
    noisy = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    mask = np.zeros(clean.shape, dtype=bool)
    return {"clean": clean, "noisy": noisy, "sigma": sigma, "mask": mask}


def tv(**overrides):
    return Restorer("tv", "model", role="target", tuned=True, overrides=overrides)


BM4D = Restorer("bm4d", "baseline", role="peer", tuned=False, oracle_informed=True)


def test_a_cell_is_the_direct_converged_solve():
    item = smooth_item()
    job = Job("test", "tv", -1, "unweighted", -1, 2.0, "test/noniid/x", band=3)
    record = run_job(job, item, None, tv(boundary="neumann", tol=1e-4))
    model = build_model("tv", boundary="neumann", tol=1e-4, **scaled_params("tv", 2.0))
    sol = model.solve(torch.from_numpy(item["noisy"])[None], None, converge=True)
    x = sol.x[0].numpy()
    from pipeline.evaluate.metrics import all_metrics

    expected = all_metrics(item["clean"], x)
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, rel=1e-12)
    assert record["iterations"] == sol.iterations and record["converged"]
    np.testing.assert_array_equal(record["x_band"], x[3])
    assert record["mpsnr"] > 20.0 + 2.0  # noisy is 20 dB at σ = 0.1: TV denoises
    # the record carries the job's fields
    assert {k: record[k] for k in ("phase", "restorer", "restorer_seed", "weighting")} == {
        "phase": "test",
        "restorer": "tv",
        "restorer_seed": -1,
        "weighting": "unweighted",
    }
    assert (record["weighting_seed"], record["multiplier"], record["band"]) == (-1, 2.0, 3)


def test_a_weighted_cell_uses_its_map_and_a_baseline_needs_none():
    item = smooth_item(1)
    item["noisy"][0, :, 5] = 0.0  # a dead line
    item["mask"][0, :, 5] = True
    w = np.where(item["mask"], 0.0, 1.0).astype(np.float32)
    w /= w.mean()
    restorer = tv(boundary="neumann", tol=1e-4)
    job = Job("test", "tv", -1, "oracle", -1, 1.0, "test/deadline/x")
    weighted = run_job(job, item, w, restorer)
    plain = run_job(job, item, None, restorer)
    assert weighted["mpsnr"] > plain["mpsnr"] + 1.0
    tune = run_job(Job("tune", "tv", -1, "oracle", -1, 1.0, "val/deadline/x"), item, w, restorer)
    assert set(tune) >= {"mpsnr", "iterations"} and "mssim" not in tune
    bm4d = run_job(
        Job("test", "bm4d", -1, NO_WEIGHTING, -1, math.nan, "test/deadline/x"), item, None, BM4D
    )
    assert bm4d["iterations"] == 0 and bm4d["converged"] and math.isnan(bm4d["primal_residual"])
    assert bm4d["weighting"] == "none" and bm4d["mpsnr"] > 20.0  # BM4D at the true mean σ


def test_overridden_strength_is_the_reference_of_the_grid():
    r2 = math.sqrt(2.0)
    tv2 = {"lam": 0.1, "mu1": 0.1 * r2, "mu2": 0.1 * r2, "mu_max": 3.0 * r2}
    assert scaled_params("tv", 2.0, {"lam": 0.05, "tol": 1e-3}) == tv2
    assert scaled_params("tv", 2.0, {"lam": 0.05, "mu_max": 1.0})["mu_max"] == r2
    assert reference_strengths("lrtv", {"tau": 0.1}) == {
        "nuclear": reference_strengths("lrtv")["nuclear"],
        "tau": 0.1,
    }
    assert tv(lam=0.05, tol=1e-4).reference_strengths() == {"lam": 0.05}
    item = smooth_item(2)
    job = Job("test", "tv", -1, "unweighted", -1, 2.0, "test/noniid/x")
    a = run_job(job, item, None, tv(lam=0.05, tol=1e-4))
    same = Job("test", "tv", -1, "unweighted", -1, 1.0, "test/noniid/x")
    b = run_job(same, item, None, tv(lam=0.1, tol=1e-4))
    # ×2 of 0.05 is the model at 0.1 (its penalties ×√2: another path to the same minimiser)
    assert a["mpsnr"] == pytest.approx(b["mpsnr"], abs=1e-3)


def test_float32_precision_gives_the_float64_result_at_loose_tolerance():
    item = smooth_item(3)
    job = Job("test", "tv", -1, "unweighted", -1, 1.0, "test/noniid/x")
    restorer = tv(boundary="neumann", tol=1e-3)
    f32 = run_job(job, item, None, restorer, "float32")
    f64 = run_job(job, item, None, restorer, "float64")
    assert abs(f32["mpsnr"] - f64["mpsnr"]) < 1e-3 and f32["iterations"] == f64["iterations"]


def test_a_group_looks_up_its_maps_and_restorers_by_label_and_seed(tmp_path):
    """What a Ray task runs: the planned restorer and the weight map keyed by (label, seed,
    item) give the cell run directly."""
    item = smooth_item(4)
    w = np.linspace(0.5, 1.5, item["noisy"].size, dtype=np.float32).reshape(item["noisy"].shape)
    (restorer,) = plan_restorers(
        EvaluateParams(restorers={"tv": {"boundary": "neumann", "tol": 1e-4}}), tmp_path
    )
    key = "test/noniid/x"
    jobs = [
        Job("test", "tv", -1, "dlw:nn", 1, 1.0, key),
        Job("test", "tv", -1, "unweighted", -1, 1.0, key),
    ]
    payload = {
        "items": {key: item},
        "weights": {weight_key("dlw:nn", 1, key): w},
        "restorers": {restorer.key: restorer},
    }
    weighted, plain = run_group(jobs, payload, threads=1, precision="float64")
    assert weighted["mpsnr"] == run_job(jobs[0], item, w, restorer)["mpsnr"]
    assert plain["mpsnr"] == run_job(jobs[1], item, None, restorer)["mpsnr"]
    assert weighted["mpsnr"] != plain["mpsnr"]
    assert (weighted["weighting"], weighted["weighting_seed"]) == ("dlw:nn", 1)


# ------------------------------------------------------------------ schema


def test_the_report_reads_only_columns_evaluate_writes():
    from pipeline.evaluate.results import GALLERY_COLUMNS as WRITTEN_GALLERY
    from pipeline.evaluate.results import RESULT_COLUMNS
    from pipeline.report.leaderboard import GALLERY_COLUMNS, REQUIRED_COLUMNS

    assert set(REQUIRED_COLUMNS) <= set(RESULT_COLUMNS)
    assert set(GALLERY_COLUMNS) <= set(WRITTEN_GALLERY)


def test_net_precision_reaches_the_loaded_nets_and_the_cache_keys(tmp_path):
    """``evaluate.net_precision``: the learned weightings' and restorers' nets run at it, their
    maps move by a bfloat16 rounding (not zero, so bf16 really ran; small), and the cache keys
    of maps and cells tell the two apart."""
    from pipeline.checkpoint import save_checkpoint
    from pipeline.evaluate.cache import map_identity
    from pipeline.methods.dlw.net import DLWNet
    from pipeline.methods.rg.net import RGNet

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "models/dlw/tv/seed-0.pt", DLWNet(4, 2).state_dict())
    save_checkpoint(tmp_path / "models/rg/denoiser/seed-0.pt", RGNet(4, 2).state_dict())
    noisy = np.random.default_rng(0).random((6, 12, 12), dtype=np.float32)
    item = {"noisy": noisy, "sigma": np.full_like(noisy, 0.1), "mask": np.zeros_like(noisy)}
    maps, keys, cells = {}, {}, {}
    for precision in ("fp32", "bf16"):
        (wt,) = plan_weightings(["dlw"], tmp_path, precision)
        part = wt.load(tmp_path)
        assert part.precision == precision
        maps[precision] = wt.compute(item, part)
        keys[precision] = map_identity(wt, tmp_path, "cpu")
        p = EvaluateParams(weightings=["unweighted"], restorers={"rg": {}}, net_precision=precision)
        (r,) = plan_restorers(p, tmp_path)
        assert r.net_precision == precision
        cells[precision] = r.identity(1.0)
    rel = np.abs(maps["bf16"] - maps["fp32"]).max() / np.abs(maps["fp32"]).max()
    assert 0 < rel < 0.05, rel
    assert keys["fp32"]["net_precision"] == "fp32" and keys["bf16"]["net_precision"] == "bf16"
    assert cells["fp32"] != cells["bf16"]
    from pipeline.methods.precision import set_precision

    plain = torch.zeros(3)  # a part with no nets (a method whose part is a tensor) is kept as is
    assert set_precision(plain, "bf16") is plain
    with pytest.raises(ValueError, match="net_precision"):
        parse_params({"evaluate": {"net_precision": "fp16"}})
