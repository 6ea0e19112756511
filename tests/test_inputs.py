"""Inputs: explicit axis order and integer scaling, clear failures of ``stages.apply``, no stale
temporary folders after a killed stage, and source images as a DVC dependency of prepare."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.dataset import prepare
from pipeline.data.params import PrepareParams, SplitParams
from pipeline.data.sources.folder import load_folder
from pipeline.evaluate.apply import read_image
from pipeline.io import atomic_dir, remove_stale_temporaries

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
# ``stages`` is not an installed package (only ``pipeline`` is), and the apply script's command
# line imports ``stages._common``: make it importable whichever tests ran before.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
from dvc_project import dvc, make_project, sh  # noqa: E402

_spec = importlib.util.spec_from_file_location("stages_apply_cli", ROOT / "stages" / "apply.py")
stages_apply = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stages_apply)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)


def test_rgb_picture_as_tall_as_bands_is_read_as_a_picture(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (31, 40, 3), dtype=np.uint8)
    save_png(tmp_path / "tall.png", rgb)
    (raw,) = load_folder(str(tmp_path), None, 31)
    assert raw.array.shape == (3, 31, 40)  # RGB, not a 31-band cube of 40 × 3 pixels
    np.testing.assert_array_equal(raw.array, rgb.transpose(2, 0, 1) / 255.0)
    # and prepare turns it into a 31-band synthetic cube, as any RGB photograph
    p = PrepareParams(
        source="folder",
        path=str(tmp_path),
        images=None,
        bands=31,
        scale=1.0,
        tile_size=16,
        min_effective_rank=0,
        split=SplitParams(0, 0, 1),
    )
    df, summary = prepare(p, 0, tmp_path / "out", progress=False)
    assert summary.synthetic and list(df.channels) == [31]


def test_rgb_tiff_is_a_picture_and_a_tiff_stack_is_a_cube(tmp_path):
    import tifffile

    rgb = np.random.default_rng(1).integers(0, 256, (31, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    stack = np.random.default_rng(2).random((31, 20, 24)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    got = {r.name: r.array for r in load_folder(str(tmp_path), None, 31)}
    np.testing.assert_array_equal(got["rgb"], rgb.transpose(2, 0, 1) / 255.0)
    np.testing.assert_array_equal(got["stack"], stack.astype(np.float64))


def test_int64_array_is_scaled_by_its_range_or_refused(tmp_path):
    a = np.arange(31 * 16 * 16, dtype=np.int64).reshape(31, 16, 16) % 1000
    np.save(tmp_path / "cube.npy", a)
    (raw,) = load_folder(str(tmp_path), None, 31)
    np.testing.assert_array_equal(raw.array, a / 999.0)  # its maximum, not 2**63 − 1
    assert raw.array.max() == 1.0
    np.save(tmp_path / "cube.npy", a - 5)
    with pytest.raises(ValueError, match=r"cube.npy: int64 pixels span \[-5, 994\]"):
        list(load_folder(str(tmp_path), None, 31))
    # uint16 keeps the image convention: divided by 65535
    np.save(tmp_path / "cube.npy", a.astype(np.uint16))
    (raw,) = load_folder(str(tmp_path), None, 31)
    np.testing.assert_array_equal(raw.array, a / 65535.0)


def test_npy_layout_declared_or_refused_when_ambiguous(tmp_path):
    cube = np.random.default_rng(3).random((31, 20, 31))  # fits (C, H, W) and (H, W, C)
    np.save(tmp_path / "both.npy", cube)
    with pytest.raises(
        ValueError,
        match=r"both.npy: has shape \(31, 20, 31\), which reads "
        r"both .* declare the axis order with prepare.layout",
    ):
        list(load_folder(str(tmp_path), None, 31))
    (hwc,) = load_folder(str(tmp_path), None, 31, "hwc")
    np.testing.assert_array_equal(hwc.array, np.moveaxis(cube, -1, 0))
    (chw,) = load_folder(str(tmp_path), None, 31, "chw")
    np.testing.assert_array_equal(chw.array, cube)
    np.save(tmp_path / "both.npy", np.moveaxis(cube[:, :, :20], 0, -1))  # (20, 20, 31): hwc
    (auto,) = load_folder(str(tmp_path), None, 31)
    np.testing.assert_array_equal(auto.array, cube[:, :, :20])


def test_apply_reads_layouts_and_integers(tmp_path):
    cube = np.random.default_rng(4).random((6, 16, 16)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", np.moveaxis(cube, 0, -1))
    np.testing.assert_array_equal(read_image(tmp_path / "hwc.npy"), cube)  # band axis shortest
    np.save(tmp_path / "square.npy", np.zeros((16, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"square.npy: .* declare the axis order with --layout"):
        read_image(tmp_path / "square.npy")
    assert read_image(tmp_path / "square.npy", layout="hwc").shape == (16, 16, 16)
    ints = (cube * 300).astype(np.int64)
    np.save(tmp_path / "ints.npy", ints)
    np.testing.assert_allclose(read_image(tmp_path / "ints.npy"), ints / ints.max(), rtol=1e-7)


def test_apply_on_int64_input_restores_a_nonzero_image(tmp_path):
    """An int64 cube of 0–255 values once read as ~1e-17 (a black result, exit 0)."""
    rng = np.random.default_rng(5)
    clean = np.linspace(0.2, 0.8, 8)[:, None, None] * np.ones((8, 20, 20))
    noisy = np.clip(np.round((clean + 0.05 * rng.standard_normal(clean.shape)) * 255), 0, 255)
    np.save(tmp_path / "ints.npy", noisy.astype(np.int64))
    code = stages_apply.cli(
        [
            str(tmp_path / "ints.npy"),
            "--weighting",
            "unweighted",
            "--target",
            "tv",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    restored = np.load(tmp_path / "o" / "restored.npy")
    read = noisy / noisy.max()
    # TV keeps the mean of each band (constant image ⇒ close to it); far from all-zero
    assert restored.min() > 0.1 and abs(restored.mean() - read.mean()) < 0.01


@pytest.mark.parametrize(
    "how",
    ["out_under_a_file", "unreadable_input", "missing_key", "key_for_npy", "crash"],
)
def test_apply_failures_are_one_line_and_non_zero(tmp_path, capsys, monkeypatch, how):
    import scipy.io

    cube = np.random.default_rng(6).random((4, 12, 12)).astype(np.float32)
    np.save(tmp_path / "c.npy", cube)
    scipy.io.savemat(tmp_path / "c.mat", {"rad": np.moveaxis(cube, 0, -1)})
    (tmp_path / "afile").write_text("x")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    args = [str(tmp_path / "c.npy"), "--weighting", "unweighted", "--out", str(tmp_path / "o")]
    expect = ""
    if how == "out_under_a_file":
        args[-1] = str(tmp_path / "afile" / "o")
        expect = f"--out {tmp_path / 'afile' / 'o'}: {tmp_path / 'afile'} is a file"
    elif how == "unreadable_input":
        args[0] = str(tmp_path / "junk.png")
        expect = f"{tmp_path / 'junk.png'}: cannot read image"
    elif how == "missing_key":
        args[0] = str(tmp_path / "c.mat")
        args += ["--key", "cube"]
        expect = f"{tmp_path / 'c.mat'}: no array 'cube'"
    elif how == "key_for_npy":
        args += ["--key", "rad"]
        expect = "--key 'rad': only .mat files hold named arrays"
    else:

        def boom(*a, **k):
            raise RuntimeError("solver exploded")

        monkeypatch.setattr(stages_apply, "restore", boom)
        expect = "RuntimeError: solver exploded"
    assert stages_apply.cli(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[apply] error: ") and expect in err[0]
    assert not (tmp_path / "o").exists()


def test_killed_stage_temporaries_are_removed_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = [
        data / ".clean.k3x_9q1z.tmp",
        data / f".clean.{dead}.ab12cd.tmp",
        data / f".clean.old-{dead}",
        data / f".degraded.{dead}.zz.tmp",
    ]
    for s in stale:
        (s / "train").mkdir(parents=True)
        (s / "train" / "x.npy").write_bytes(b"\0" * 1000)
    live = data / f".clean.{os.getppid()}.live.tmp"  # a running process's: kept
    live.mkdir()
    p = PrepareParams(
        images=["astronaut", "coffee"], scale=0.125, tile_size=16, split=SplitParams(0, 0, 1)
    )
    prepare(p, 0, data / "clean", progress=False)
    assert (data / "clean" / "manifest.parquet").is_file()
    assert not any(s.exists() for s in stale[:3]) and live.exists()
    assert stale[3].exists()  # another out's temporaries are that stage's business
    with atomic_dir(data / "degraded") as tmp:
        assert not stale[3].exists() and tmp.name.startswith(f".degraded.{os.getpid()}.")
    assert remove_stale_temporaries(data / "clean") == []
    assert sorted(x.name for x in data.iterdir()) == sorted(["clean", "degraded", live.name])


def test_replaced_source_image_makes_dvc_rerun_prepare(tmp_path):
    """A real ``dvc status``/``dvc repro`` in a temporary git repository with a folder source."""
    rng = np.random.default_rng(7)
    params = {
        "seed": 0,
        "prepare": {
            "source": "folder",
            "path": "images",
            "images": None,
            "bands": 3,
            "scale": 1.0,
            "tile_size": 16,
            "split": {"train": 0, "val": 0, "test": 2},
        },
        # dvc.yaml's train stage is a foreach over train.methods: DVC resolves it to parse
        "train": {"methods": ["dlw"], "dlw": {}},
    }

    def images(repo):
        (repo / "images").mkdir()
        for i in range(2):
            save_png(repo / f"images/im{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))

    repo = tmp_path / "project"
    env = make_project(repo, params, setup=images)

    def run(*args):
        return sh(dvc(*args), repo, env, timeout=300)

    first = run("repro", "prepare")
    assert "Running stage 'prepare'" in first
    again = run("repro", "prepare")
    assert "Running stage 'prepare'" not in again  # unchanged images: prepare is skipped
    before = (repo / "data/clean/manifest.parquet").read_bytes()
    save_png(repo / "images/im1.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    run("repro", "sources")  # refresh the manifest (what `dvc repro` does first)
    status = run("status", "prepare")
    assert "prepare:" in status and "data/sources.json" in status
    third = run("repro", "prepare")
    assert "Running stage 'prepare'" in third
    assert (repo / "data/clean/manifest.parquet").read_bytes() != before
