"""Training without Ray: DLWnet, params (the ``train`` section and ``train.dlw``), batches, the
bilevel step (it learns; a NaN stops it), checkpoints (exact resume, weights_only, corrupt files),
the generic runner's outputs and naming, and a runner that names no method."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import parse_params
from pipeline.degrade.registry import Case
from pipeline.methods.dlw import DLW
from pipeline.methods.dlw.bilevel import batch_mpsnr, bilevel_step, upper_loss
from pipeline.methods.dlw.data import draw_batch, validation_set
from pipeline.methods.dlw.net import DLWNet, load_dlwnet, normalise_weights
from pipeline.methods.dlw.params import DLWParams
from pipeline.methods.dlw.trainer import (
    COLLAPSE_MARGIN_DB,
    MAX_RETRIES,
    Trainer,
    TrialSpec,
    init_net,
)
from pipeline.schema import ConfigError
from pipeline.seeding import rng_for
from pipeline.train.data import load_tiles

sys.path.insert(0, str(Path(__file__).parent))
from ray_fixtures import make_dataset, smooth_cube

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "pipeline" / "train"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("train-data"))


def tiny_spec(**kw) -> TrialSpec:
    base = dict(
        source_set="tv",
        seed_index=0,
        width=4,
        depth=1,
        patch_size=16,
        batch_size=2,
        epochs=3,
        steps_per_epoch=2,
        noise={"name": "impulse"},
        val_models=("tv",),
    )
    return TrialSpec(**{**base, **kw})


def tiny_trainer(data: Path, **kw) -> Trainer:
    spec = tiny_spec(**kw)
    val = validation_set(
        load_tiles(data, "val"), seed=0, patches=2, patch_size=16, noise=Case.from_param(spec.noise)
    )
    return Trainer(spec, list(load_tiles(data, "train").values()), val)


# --- DLWnet ----------------------------------------------------------------------------------


def test_dlwnet_matches_the_conv3d_architecture_and_normalises_per_sample():
    torch.manual_seed(0)
    net = DLWNet(width=5, depth=2)
    y = torch.rand(3, 7, 9, 11)
    assert torch.allclose(net.scores(y), net.reference_scores(y), atol=1e-5)
    w = net(y)
    assert w.shape == y.shape and bool((w > 0).all())
    n = 7 * 9 * 11
    assert torch.allclose(w.flatten(1).sum(1), torch.full((3,), n * (1 + 1e-4)), rtol=1e-5)
    assert [type(m).__name__ for m in net.modules()].count("Conv3d") == 2 * 2 + 1


def test_normalisation_is_softmax_times_n_plus_floor():
    h = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    expected = 4 * torch.softmax(h.flatten(), 0).reshape(h.shape) + 1e-4
    assert torch.allclose(normalise_weights(h), expected)


def test_seeded_init_is_reproducible_and_seed_dependent():
    a, b, c = init_net(tiny_spec()), init_net(tiny_spec()), init_net(tiny_spec(seed_index=1))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not all(
        torch.equal(va, vc)
        for va, vc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_state_dict_round_trip_rebuilds_the_shape():
    net = DLWNet(6, 2)
    again = DLWNet.from_state_dict(net.state_dict())
    assert (again.width, again.depth) == (6, 2)
    with pytest.raises(ValueError, match="not a DLWNet state dict"):
        DLWNet.from_state_dict({"x": torch.zeros(1)})


# --- params -------------------------------------------------------------------------------------


def test_default_train_params_give_the_seven_source_sets_longest_first():
    p = DLWParams()
    variants = DLW(p).variants()
    assert len(variants) == 7 and variants[0] == "nn+tv+tvs" and variants[-1] == "nn"
    assert set(variants) == {"nn", "tv", "tvs", "nn+tv", "nn+tvs", "tv+tvs", "nn+tv+tvs"}
    assert set(p.sets()) == set(variants)
    assert p.noise.name == "impulse" and p.noise.params.density.kind == "uniform"
    # The train section: every registered method listed and parsed by default.
    train = parse_params({}).train
    assert train.methods == ["dlw", "guidance", "alr", "rg"] and train.sections["dlw"] == p
    method = train.method("dlw")
    assert isinstance(method, DLW) and method.params == p


def test_default_source_models_have_an_unrolled_solve():
    from pipeline.models.registry import source_models

    assert set(DLWParams().source_models) <= set(source_models())


def parse_and_check(data: dict):
    """Parse params, then the methods' checks that need the model registry (as the stages and
    ``python -m stages.check`` do)."""
    params = parse_params(data)
    for name in params.train.methods:
        params.train.method(name).check(f"train.{name}")
    return params


def _key(key: str) -> str:
    return re.escape(key)


@pytest.mark.parametrize(
    ("dlw", "key"),
    [
        ({"source_models": ["tv", "bm3d"]}, "train.dlw.source_models[1]"),
        ({"source_sets": [["tv", "nn"]], "source_models": ["tv"]}, "train.dlw.source_sets[0]"),
        ({"lr": 2.0}, "train.dlw.lr"),
        ({"search": {"momentum": [0.9]}}, "train.dlw.search.momentum"),
        ({"search": {"lr": [0.01, -1]}}, "train.dlw.search.lr[1]"),
        ({"noise": {"name": "nope"}}, "train.dlw.noise.name"),
        ({"seeds": []}, "train.dlw.seeds"),
        ({"widht": 3}, "train.dlw.widht"),
    ],
)
def test_bad_train_params_name_the_key(dlw, key):
    with pytest.raises(ConfigError, match=_key(key)):
        parse_and_check({"train": {"methods": ["dlw"], "dlw": dlw}})


@pytest.mark.parametrize(
    ("train", "key"),
    [
        ({"methods": ["foo"]}, "train.methods[0] = 'foo'"),
        ({"methods": ["dlw", "foo"]}, "train.methods[1] = 'foo'"),
        ({"methods": ["dlw", "dlw"]}, "train.methods"),
        ({"dwl": {"width": 4}}, "train.dwl"),
        ([], "train"),
    ],
)
def test_an_unknown_method_or_train_key_is_named(train, key):
    with pytest.raises(ConfigError, match=_key(key)) as err:
        parse_params({"train": train})
    if "foo" in key or key == "train.dwl":
        assert "dlw" in str(err.value)  # what is known is listed


def test_an_unlisted_method_is_still_validated():
    """``train.methods: []`` trains nothing, but a typo in ``train.dlw`` still stops."""
    assert parse_params({"train": {"methods": []}}).train.methods == []
    with pytest.raises(ConfigError, match=_key("train.dlw.lr")):
        parse_params({"train": {"methods": [], "dlw": {"lr": -1.0}}})


def test_repository_params_parse():
    from pipeline.config import load_params

    default = load_params(ROOT / "params.yaml").train
    assert default.methods == ["dlw", "guidance", "rg", "alr"]
    assert default.sections["dlw"].width == 16
    assert default.sections["guidance"].noise_percent == [1, 30]
    paper = load_params(ROOT / "profiles" / "paper.yaml").train.sections["dlw"]
    assert (paper.width, paper.patch_size, paper.batch_size, paper.lr) == (64, 64, 10, 1e-3)
    assert (paper.epochs, paper.steps_per_epoch, paper.gpu) == (10, 2000, 1)
    guidance = load_params(ROOT / "profiles" / "paper.yaml").train.sections["guidance"]
    assert (guidance.width, guidance.stages, guidance.noise_percent) == (64, 5, [1, 5])


def test_importing_the_config_stays_light():
    code = (
        "import sys, pipeline.config, pipeline.methods.params, pipeline.methods.registry, "
        "pipeline.tracking; "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- data -----------------------------------------------------------------------------------


def test_batches_are_a_seeded_stream_and_validation_is_shared(data):
    tiles = list(load_tiles(data, "train").values())
    noise = Case.from_param({"name": "impulse"})
    kw = dict(
        seed=0, source_set="tv", seed_index=0, batch_size=3, patch_size=8, augment=True, noise=noise
    )
    a, b, c = (
        draw_batch(tiles, step=5, **kw),
        draw_batch(tiles, step=5, **kw),
        draw_batch(tiles, step=6, **kw),
    )
    assert a.noisy.shape == (3, 8, 8, 8) and a.noisy.dtype == np.float32
    assert np.array_equal(a.noisy, b.noisy) and not np.array_equal(a.noisy, c.noisy)
    assert a.mask.any()
    val1 = validation_set(load_tiles(data, "val"), seed=0, patches=2, patch_size=16, noise=noise)
    val2 = validation_set(load_tiles(data, "val"), seed=0, patches=2, patch_size=16, noise=noise)
    assert val1.noisy.shape == (2, 8, 16, 16) and np.array_equal(val1.noisy, val2.noisy)
    with pytest.raises(ValueError, match=r"train\.patch_size = 32"):
        draw_batch(tiles, step=0, **{**kw, "patch_size": 32})


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the prepare stage"):
        load_tiles(tmp_path, "train")


# --- the bilevel step -----------------------------------------------------------------------------


def test_bilevel_step_learns_to_down_weight_impulses():
    """Fixed tiny batch, impulse noise, TV source: within 150 Adam steps the upper loss falls
    and the mean weight on corrupted pixels drops below half of that on clean pixels."""
    from pipeline.models.registry import build_model

    clean = smooth_cube(8, 16, 0.1)
    noise = Case.from_param(
        {"name": "impulse", "sigma_255": 10, "density": 0.3, "band_fraction": 0.5}
    )
    rng = rng_for(0, "tests", "learn")
    draws = [noise(clean, rng) for _ in range(2)]
    noisy = torch.from_numpy(np.stack([y for y, _ in draws]))
    mask = torch.from_numpy(np.stack([info["mask"] for _, info in draws]))
    target = torch.from_numpy(np.stack([clean, clean]))
    torch.manual_seed(0)
    net, tv = DLWNet(width=8, depth=2), [build_model("tv")]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.no_grad():
        start, w0 = upper_loss(net, tv, noisy, target)
    assert float(w0[mask].mean() / w0[~mask].mean()) > 0.9  # untrained: near uniform
    for step in range(150):
        bilevel_step(net, tv, optimizer, noisy, target, step=step)
    with torch.no_grad():
        end, w = upper_loss(net, tv, noisy, target)
    assert float(end) < 0.5 * float(start)
    assert float(w[mask].mean()) < 0.5 * float(w[~mask].mean())


def test_non_finite_loss_stops_the_trial():
    from pipeline.models.registry import build_model

    net = DLWNet(4, 1)
    noisy = torch.rand(1, 4, 8, 8)
    noisy[0, 1, 2, 3] = float("nan")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(
        FloatingPointError, match="non-finite upper loss at step 7 of trial tv/seed-0"
    ):
        bilevel_step(
            net,
            [build_model("tv")],
            optimizer,
            noisy,
            torch.rand(1, 4, 8, 8),
            step=7,
            trial="tv/seed-0",
        )
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_batch_mpsnr_matches_the_evaluate_metric():
    from pipeline.evaluate.metrics import mpsnr

    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    ours = batch_mpsnr(x, y)
    assert ours[1].item() == pytest.approx(mpsnr(x[1].numpy(), y[1].numpy()), rel=1e-6)


def test_a_collapsed_epoch_is_redone_from_its_start_with_half_the_learning_rate(data):
    """lr = 1 sharpens the softmax until the weighted model falls > 1 dB below the unweighted
    one on val: the epoch is undone and redone at 0.5, then 0.25. The kept epoch is exactly
    the one a trial started at the final rate trains (same start, same batches)."""
    a = tiny_trainer(data, lr=1.0, steps_per_epoch=4)
    ra = a.run_epoch()
    assert 1 <= ra["lr_retries"] < MAX_RETRIES
    assert ra["lr"] == 1.0 / 2 ** ra["lr_retries"]
    assert ra["val_mpsnr"] >= a.unweighted_val - COLLAPSE_MARGIN_DB
    b = tiny_trainer(data, lr=ra["lr"], steps_per_epoch=4)
    rb = b.run_epoch()
    assert rb["lr_retries"] == 0 and rb["val_mpsnr"] == ra["val_mpsnr"]
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.optimizer.param_groups[0]["lr"] == pytest.approx(ra["lr"] * a.spec.lr_decay)
    # A rate no halving rescues: the retries run out and the collapsed epoch is kept, recorded.
    c = tiny_trainer(data, lr=50.0, steps_per_epoch=4)
    rc = c.run_epoch()
    assert rc["lr_retries"] == MAX_RETRIES
    assert rc["val_mpsnr"] < c.unweighted_val - COLLAPSE_MARGIN_DB


# --- checkpoints ----------------------------------------------------------------------------------


def test_resume_from_a_checkpoint_is_exact(data, tmp_path):
    straight = tiny_trainer(data)
    for _ in range(3):
        straight.run_epoch()
    first = tiny_trainer(data)
    first.run_epoch()
    save_checkpoint(tmp_path / "c.pt", first.state_dict())
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # plain tensors and lists only
    resumed = tiny_trainer(data)
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.run_epoch()
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in zip(straight.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(a, b)  # bit-exact: same batches, same optimiser state
    assert resumed.history[-1]["lr"] == pytest.approx(straight.history[-1]["lr"])
    with pytest.raises(ValueError, match="checkpoint of trial"):
        tiny_trainer(data, seed_index=3).load_state_dict(state)


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_corrupt_checkpoint_is_a_value_error_naming_the_file(tmp_path, damage):
    path = tmp_path / f"{damage}.pt"
    save_checkpoint(path, {"state_dict": DLWNet(4, 1).state_dict()})
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(2048))
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path.name}: not a readable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match=str(path)):
        load_dlwnet(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Path("x")}, path)  # an arbitrary class: weights_only must refuse it
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_load_dlwnet_from_a_state_dict_file(tmp_path):
    net = DLWNet(6, 2)
    save_checkpoint(tmp_path / "seed-0.pt", net.state_dict())
    again = load_dlwnet(tmp_path / "seed-0.pt")
    y = torch.rand(1, 4, 8, 8)
    assert torch.allclose(again(y), net(y))
    save_checkpoint(tmp_path / "list.pt", [1, 2])
    with pytest.raises(ValueError, match=r"list\.pt: not a checkpoint of weights"):
        load_dlwnet(tmp_path / "list.pt")
    # The method's loader is the same, in eval mode.
    part = DLW.load(tmp_path / "seed-0.pt")
    assert not part.training and torch.allclose(part(y), net(y))


# --- naming, tracking, outputs ----------------------------------------------------------------


def test_experiment_name_follows_params_seed_data_and_store():
    from pipeline.train.runner import experiment_name

    m = DLW(DLWParams())
    name = experiment_name(m, 0, "abc")
    assert name.startswith("dlw-") and len(name) == 16
    assert name == experiment_name(DLW(DLWParams()), 0, "abc")
    assert name != experiment_name(DLW(DLWParams(lr=0.02)), 0, "abc")
    assert name != experiment_name(m, 1, "abc") and name != experiment_name(m, 0, "abd")
    assert name != experiment_name(m, 0, "abc", "http://mlflow:5000#dlw-bench")


def test_the_trial_config_names_the_variant():
    """A Tune config's ``variant`` is DLW's source set; the other keys map by name."""
    config = {"variant": "tv", "seed_index": 0, "lr": 0.5, "augment": False, "unused": 1}
    spec = TrialSpec.from_config(config, seed=7, val_models=["tv", "nn"])
    assert (spec.source_set, spec.seed_index, spec.seed, spec.lr) == ("tv", 0, 7, 0.5)
    assert spec.val_models == ("tv", "nn") and spec.augment is False
    assert DLW().trial_config() == {"augment": True, "noise": DLWParams().noise.to_param()}


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    from pipeline.tracking import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5000"
    assert (
        resolve_tracking_uri("sqlite:///x.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/x.db"
    )
    with pytest.raises(ValueError, match=r"tracking\.uri"):
        resolve_tracking_uri("some/folder", tmp_path)


def _outcome(variant, seed, val, lr=0.01):
    from pipeline.train.runner import TrialOutcome

    history = [
        {
            "epoch": e,
            "step": 2 * e,
            "lr": lr,
            "train_loss": 0.1 / e,
            "val_mpsnr": val - 2 + e,
            "val_mpsnr_tv": val - 2 + e,
            "val_score": val - 2 + e,
            "val_weight_ratio": 0.5,
        }
        for e in (1, 2)
    ]
    config = {"variant": variant, "seed_index": seed, "lr": lr, "width": 4, "depth": 1}
    return TrialOutcome(
        variant,
        seed,
        config,
        f"t{seed}{lr}",
        history[-1],
        DLWNet(4, 1).state_dict(),
        history,
        mlflow_run_id=f"run{seed}",
        searchable=DLWParams.SEARCHABLE,
    )


def _run(params, root: Path, outcomes):
    from pipeline.train.runner import TrainingRun

    method = params.train.method("dlw")
    return TrainingRun(method, "dlw-x", root, False, "hash", "sqlite:///m.db", "1", outcomes)


def test_outputs_keep_every_seed_and_the_best(data, tmp_path):
    from pipeline.train.outputs import choose, write_outputs

    dlw = {"source_models": ["tv"], "seeds": [0, 1], "search": {"lr": [0.01, 0.02]}}
    params = parse_params({"train": {"methods": ["dlw"], "dlw": dlw}})
    outcomes = [
        _outcome("tv", 0, 20.0),
        _outcome("tv", 1, 21.0),
        _outcome("tv", 0, 19.0, 0.02),
        _outcome("tv", 1, 23.5, 0.02),
    ]
    chosen = choose(outcomes)  # lr 0.02: mean 21.25 > 20.5
    assert [o.config["lr"] for o in chosen["tv"]] == [0.02, 0.02]
    run = _run(params, tmp_path, outcomes)
    metrics = write_outputs(run, params, tmp_path, {"seed": 0, "data_dir": str(data)})
    folder = tmp_path / "models" / "dlw" / "tv"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.json",
        "best.pt",
        "seed-0.json",
        "seed-0.pt",
        "seed-1.json",
        "seed-1.pt",
    ]
    assert torch.equal(
        torch.load(folder / "best.pt", weights_only=True)["head.bias"],
        outcomes[3].state_dict["head.bias"],
    )
    seed1 = json.loads((folder / "seed-1.json").read_text())
    assert seed1["mlflow_run_id"] == "run1" and seed1["ray_trial_id"] == "t10.02"
    assert seed1["dataset_hash"] == "hash" and seed1["validation"]["val_mpsnr"] == 23.5
    assert seed1["method"] == "dlw" and seed1["variant"] == "tv"
    assert seed1["source_models"] == ["tv"] and seed1["net"]["width"] == 4
    assert metrics["method"] == "dlw" and metrics["trials"] == 4
    assert metrics["variants"]["tv"]["val_mpsnr"] == pytest.approx(21.25)
    assert metrics["variants"]["tv"]["val_score"] == pytest.approx(21.25)
    assert metrics["variants"]["tv"]["best_seed"] == 1
    # DLW's reference: the unweighted model on the same val patches (finite, in dB).
    assert 5.0 < metrics["unweighted"]["val_mpsnr_tv"] < 60.0
    on_disk = json.loads((tmp_path / "reports/train/dlw/metrics.json").read_text())
    assert on_disk == metrics
    curves = (tmp_path / "reports/train/dlw/curves/tv.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,step,lr,train_loss,val_score,val_mpsnr")
    assert len(curves) == 3


def test_the_trial_hands_on_its_best_epoch_on_val_and_a_resume_keeps_it(data, tmp_path):
    trainer = tiny_trainer(data, epochs=4)
    snapshots = []
    for _ in range(4):
        trainer.run_epoch()
        snapshots.append({k: v.clone() for k, v in trainer.net.state_dict().items()})
    scores = [h["val_mpsnr"] for h in trainer.history]
    best = int(np.argmax(scores))  # the first of equal maxima, as a strict ">" keeps
    epoch, state = trainer.best_state()
    assert epoch == best + 1
    assert all(torch.equal(state[k], snapshots[best][k]) for k in state)
    # through a checkpoint (weights_only), as a restored Ray trial
    save_checkpoint(tmp_path / "c.pt", trainer.state_dict())
    again = tiny_trainer(data, epochs=4)
    again.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    epoch2, state2 = again.best_state()
    assert epoch2 == epoch and all(torch.equal(state2[k], state[k]) for k in state)


def test_outputs_describe_the_selected_epoch(data, tmp_path):
    from pipeline.train.outputs import write_outputs

    params = parse_params({"train": {"dlw": {"source_models": ["tv"], "seeds": [0]}}})
    o = _outcome("tv", 0, 20.0)
    o.best_epoch = 1  # the first epoch scored 19.0 on val, the last 20.0: pretend the first won
    write_outputs(_run(params, tmp_path, [o]), params, tmp_path, {"seed": 0, "data_dir": data})
    record = json.loads((tmp_path / "models/dlw/tv/seed-0.json").read_text())
    assert record["selected_epoch"] == 1 and record["epochs_trained"] == 2
    assert record["validation"]["val_mpsnr"] == 19.0


# --- the runner names no method ---------------------------------------------------------------


def test_the_runner_names_no_method():
    """Every method goes through the same runner: no file of ``pipeline/train`` names one
    (docstrings and comments included), so a new method needs no change there."""
    files = sorted(RUNNER.rglob("*.py"))
    assert len(files) >= 6
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in files
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if '"dlw"' in line or re.search(r"\bDLW\b", line)
    ]
    assert hits == []


def test_spec_from_config_keeps_fields_and_makes_tuples():
    """A trial spec from a Tune config: unknown keys dropped, lists to tuples only where the
    field is a tuple (a list field stays a list)."""
    from dataclasses import dataclass, field

    from pipeline.methods.params import spec_from_config

    @dataclass(frozen=True)
    class Spec:
        variant: str
        pair: tuple[float, float] = (0.0, 1.0)
        names: list[str] = field(default_factory=list)

    spec = spec_from_config(Spec, {"variant": "a", "pair": [2, 3], "names": ["x"], "lr": 0.1})
    assert spec == Spec("a", (2, 3), ["x"]) and isinstance(spec.pair, tuple)
    assert isinstance(spec.names, list)
    assert spec_from_config(Spec, {"variant": "b"}).pair == (0.0, 1.0)
