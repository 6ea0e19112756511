"""The evaluate stage's pieces: params, tuning choice, checkpoint discovery, one cell against a
direct solve, and the results table's schema on a tiny real run (local Ray)."""

import math

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, parse_params
from pipeline.evaluate.cells import Job, run_job
from pipeline.evaluate.params import KNOWN_BASELINES, KNOWN_TARGETS, EvaluateParams
from pipeline.evaluate.transfer import Checkpoint, check_targets, choose, find_checkpoints
from pipeline.models import MODELS, build_model
from pipeline.models.strength import STRENGTH_FIELDS, reference_strengths, scaled_params


def test_known_names_match_the_registries():
    from pipeline.evaluate.baselines import BASELINES

    assert set(KNOWN_TARGETS) <= set(MODELS) and set(STRENGTH_FIELDS) == set(KNOWN_TARGETS)
    assert set(KNOWN_BASELINES) == {*BASELINES, "tv_l1"}


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"targets": {"tvx": {}}}, "evaluate.targets"),
        ({"weightings": ["learned"]}, "evaluate.weightings[0]"),
        ({"weightings": ["oracle", "oracle"]}, "evaluate.weightings"),
        ({"grid": [1.0, -2.0]}, "evaluate.grid[1]"),
        ({"grid": []}, "evaluate.grid"),
        ({"baselines": ["bm5d"]}, "evaluate.baselines[0]"),
        ({"cpu": 0}, "evaluate.cpu"),
        ({"gallery": 3}, "evaluate.gallery"),
    ],
)
def test_bad_evaluate_params_name_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_params({"evaluate": section})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"targets": {"tv": {"lamda": 0.1}}},
            r"params\.yaml: evaluate\.targets\.tv\.lamda: unknown",
        ),
        ({"targets": {"tv": {"tol": "x"}}}, r"params\.yaml: evaluate\.targets\.tv\.tol = 'x'"),
        # tv_l1 has its own section: the error names it, not evaluate.targets.tv_l1.
        ({"tv_l1": {"foo": 1}}, r"params\.yaml: evaluate\.tv_l1\.foo: unknown key"),
    ],
)
def test_overrides_are_checked_by_the_model_under_their_own_key(section, message):
    with pytest.raises(ConfigError, match=message):
        check_targets(EvaluateParams(**section))
    check_targets(EvaluateParams())  # the defaults build


def test_scaled_params_scale_the_main_strength():
    assert scaled_params("tv", 4.0) == {"lam": 4.0 * reference_strengths("tv")["lam"]}
    nn = reference_strengths("nn")["lam_factor"]
    assert scaled_params("nn", 4.0) == {"lam_factor": nn / 4.0}  # λ weighs the fidelity
    ref = reference_strengths("lrtv")
    assert scaled_params("lrtv", 0.5) == {k: 0.5 * v for k, v in ref.items()}


def rec(target, weighting, m, value, case="mixture", image="a", seed=-1, method="dlw"):
    return {
        "method": method,
        "target": target,
        "weighting": weighting,
        "seed": seed,
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
    oracle = chosen[("dlw", "tv", "mixture", "oracle", -1)]
    assert oracle == {"multiplier": 0.25, "val_mpsnr": 25.0, "on_edge": True}
    assert chosen[("dlw", "tv", "mixture", "unweighted", -1)]["on_edge"] is False
    assert chosen[("dlw", "tv", "mixture", "unweighted", -1)]["multiplier"] == 1.0
    assert chosen[("dlw", "nn", "mixture", "unweighted", -1)]["multiplier"] == 1.0
    # a one-value grid has no edge
    assert (
        choose([rec("tv", "oracle", 1.0, 3.0)], [1.0])[("dlw", "tv", "mixture", "oracle", -1)][
            "on_edge"
        ]
        is False
    )


def test_find_checkpoints_all_seeds_and_missing_sets(tmp_path):
    for name in ("nn", "nn+tv"):
        for k in (0, 1):
            p = tmp_path / "models" / "dlw" / name / f"seed-{k}.pt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        (tmp_path / "models" / "dlw" / name / "best.pt").write_bytes(b"")
    found = find_checkpoints(tmp_path)
    assert [(c.source_set, c.seed) for c in found] == [
        ("nn", 0),
        ("nn", 1),
        ("nn+tv", 0),
        ("nn+tv", 1),
    ]
    assert found[2] == Checkpoint("nn+tv", 0, "models/dlw/nn+tv/seed-0.pt")
    assert found[2].weighting == "dlw:nn+tv"
    assert len(find_checkpoints(tmp_path, ["nn"])) == 2
    with pytest.raises(ValueError, match=r"tvs"):
        find_checkpoints(tmp_path, ["nn", "tvs"])


def smooth_item(seed=0, c=6, h=16, w=16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / h
    clean = np.stack([0.5 + 0.3 * np.sin(2 * xx + k) * np.cos(3 * yy) for k in range(c)])
    clean = clean.astype(np.float32)
    sigma = np.full_like(clean, 0.1)
    noisy = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    mask = np.zeros(clean.shape, dtype=bool)
    return {"clean": clean, "noisy": noisy, "sigma": sigma, "mask": mask}


def test_a_cell_is_the_direct_converged_solve():
    item = smooth_item()
    overrides = {"tv": {"boundary": "neumann", "tol": 1e-4}}
    job = Job("test", "dlw", "tv", "unweighted", -1, 2.0, "test/noniid/x", band=3)
    record = run_job(job, item, None, overrides)
    model = build_model(
        "tv", boundary="neumann", tol=1e-4, lam=2.0 * reference_strengths("tv")["lam"]
    )
    sol = model.solve(torch.from_numpy(item["noisy"])[None], None, converge=True)
    x = sol.x[0].numpy()
    from pipeline.evaluate.metrics import all_metrics

    expected = all_metrics(item["clean"], x)
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, rel=1e-12)
    assert record["iterations"] == sol.iterations and record["converged"]
    np.testing.assert_array_equal(record["x_band"], x[3])
    assert record["mpsnr"] > 20.0 + 2.0  # noisy is 20 dB at σ = 0.1: TV denoises


def test_a_weighted_cell_uses_its_map_and_a_baseline_needs_none():
    item = smooth_item(1)
    item["noisy"][0, :, 5] = 0.0  # a dead line
    item["mask"][0, :, 5] = True
    w = np.where(item["mask"], 0.0, 1.0).astype(np.float32)
    w /= w.mean()
    overrides = {"tv": {"boundary": "neumann", "tol": 1e-4}}
    job = Job("test", "dlw", "tv", "oracle", -1, 1.0, "test/deadline/x")
    weighted = run_job(job, item, w, overrides)
    plain = run_job(job, item, None, overrides)
    assert weighted["mpsnr"] > plain["mpsnr"] + 1.0
    tune = run_job(
        Job("tune", "dlw", "tv", "oracle", -1, 1.0, "val/deadline/x"), item, w, overrides
    )
    assert set(tune) >= {"mpsnr", "iterations"} and "mssim" not in tune
    bm4d = run_job(
        Job("test", "bm4d", "bm4d", "none", -1, math.nan, "test/deadline/x"), item, None, {}
    )
    assert bm4d["iterations"] == 0 and bm4d["converged"] and math.isnan(bm4d["primal_residual"])


def test_overridden_strength_is_the_reference_of_the_grid():
    assert scaled_params("tv", 2.0, {"lam": 0.05, "tol": 1e-3}) == {"lam": 0.1}
    assert reference_strengths("lrtv", {"tau": 0.1}) == {
        "nuclear": reference_strengths("lrtv")["nuclear"],
        "tau": 0.1,
    }
    item = smooth_item(2)
    job = Job("test", "dlw", "tv", "unweighted", -1, 2.0, "test/noniid/x")
    a = run_job(job, item, None, {"tv": {"lam": 0.05, "tol": 1e-4}})
    same = Job("test", "dlw", "tv", "unweighted", -1, 1.0, "test/noniid/x")
    b = run_job(same, item, None, {"tv": {"lam": 0.1, "tol": 1e-4}})
    assert a["mpsnr"] == b["mpsnr"]  # ×2 of 0.05 is the model at 0.1


def test_float32_precision_gives_the_float64_result_at_loose_tolerance():
    item = smooth_item(3)
    job = Job("test", "dlw", "tv", "unweighted", -1, 1.0, "test/noniid/x")
    over = {"tv": {"boundary": "neumann", "tol": 1e-3}}
    f32 = run_job(job, item, None, over, "float32")
    f64 = run_job(job, item, None, over, "float64")
    assert abs(f32["mpsnr"] - f64["mpsnr"]) < 1e-3 and f32["iterations"] == f64["iterations"]


def test_the_report_reads_only_columns_evaluate_writes():
    from pipeline.evaluate.results import GALLERY_COLUMNS as WRITTEN_GALLERY
    from pipeline.evaluate.results import RESULT_COLUMNS
    from pipeline.report.leaderboard import GALLERY_COLUMNS, REQUIRED_COLUMNS

    assert set(REQUIRED_COLUMNS) <= set(RESULT_COLUMNS)
    assert set(GALLERY_COLUMNS) <= set(WRITTEN_GALLERY)
