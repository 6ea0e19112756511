"""The degrade stage's evaluation sets: file format, hashes, determinism and isolation of cases."""

import numpy as np
import pytest

from pipeline.data.dataset import prepare
from pipeline.data.params import PrepareParams, SplitParams
from pipeline.degrade.params import DegradeParams
from pipeline.degrade.registry import Case
from pipeline.degrade.suite import DEGRADED_KEYS, degrade, summarize
from pipeline.evaluate.metrics import mpsnr
from pipeline.io import array_sha256, load_npy, load_npz


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("degrade")
    p = PrepareParams(
        images=["astronaut", "coffee", "rocket"],
        scale=0.125,
        tile_size=16,
        split=SplitParams(0, 1, 2),
    )
    df, summary = prepare(p, 0, root / "data/clean", progress=False)
    df["path"] = [f"data/clean/{s}/{i}.npy" for s, i in zip(df.split, df.image_id, strict=True)]
    return root, df, {"dataset_hash": summary.dataset_hash, "synthetic": summary.synthetic}


def run(clean, out, cases=("noniid", "mixture")):
    root, df, meta = clean
    p = DegradeParams(cases=[Case.from_param(c) for c in cases])
    return degrade(p, 3, df, meta, root / out, root=root, progress=False)


def test_files_hold_noisy_sigma_and_mask_and_match_the_manifest(clean):
    root, df, _ = clean
    out, examples, figure_id = run(clean, "a")
    assert len(out) == 2 * 3 and set(out.split) == {"val", "test"}
    assert figure_id in set(df.loc[df.split == "test", "image_id"]) and set(examples) == {
        "noniid",
        "mixture",
    }
    for row in out.itertuples():
        arrays = load_npz(root / "a" / row.split / row.case / f"{row.image_id}.npz", DEGRADED_KEYS)
        noisy, sigma, mask = (arrays[k] for k in DEGRADED_KEYS)
        assert noisy.dtype == sigma.dtype == np.float32 and mask.dtype == bool
        assert noisy.shape == sigma.shape == mask.shape == (31, 16, 16)
        assert array_sha256(noisy, sigma, mask) == row.sha256
        x = load_npy(root / row.clean_path)
        assert row.noisy_mpsnr == pytest.approx(mpsnr(x, noisy))
        assert mask.any() if row.case == "mixture" else not mask.any()
    s = summarize(out)
    assert s["test"]["noniid"]["n_images"] == 2


def test_degrade_is_bit_identical_when_rerun_and_cases_are_independent(clean):
    root = clean[0]
    a, _, _ = run(clean, "a2")
    b, _, _ = run(clean, "b2")
    assert list(a.sha256) == list(b.sha256)
    for row in a.itertuples():
        rel = f"{row.split}/{row.case}/{row.image_id}.npz"
        assert (root / "a2" / rel).read_bytes() == (root / "b2" / rel).read_bytes()
    # adding a case and reordering the suite leaves the existing cases' draws unchanged
    c, _, _ = run(clean, "c2", cases=("impulse", "mixture", "noniid"))
    key = ["split", "case", "image_id"]
    merged = a.merge(c, on=key, suffixes=("_a", "_c"))
    assert len(merged) == len(a) and (merged.sha256_a == merged.sha256_c).all()


def test_a_tampered_clean_image_is_refused(clean, tmp_path):
    root, df, meta = clean
    bad = df.copy()
    bad.loc[0, "sha256"] = "0" * 64
    p = DegradeParams(cases=[Case.from_param("noniid")])
    with pytest.raises(ValueError, match="does not match the manifest's sha256"):
        degrade(p, 0, bad, meta, tmp_path / "out", root=root, progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_figure_image_is_named(clean, tmp_path):
    root, df, meta = clean
    p = DegradeParams(cases=[Case.from_param("noniid")], figure_image="nope")
    with pytest.raises(ValueError, match=r"degrade.figure_image = 'nope'"):
        degrade(p, 0, df, meta, tmp_path / "out", root=root, progress=False)
