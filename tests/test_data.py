"""Clean-image sources and the prepare stage: layouts, errors, splits, hashes, determinism."""

import dataclasses

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline.data.dataset import prepare
from pipeline.data.params import PrepareParams, SplitParams
from pipeline.data.sources import SOURCES
from pipeline.io import array_sha256, load_npy


def load(source, root, bands=31, names=None):
    return list(SOURCES[source](str(root), names, bands))


# ---------------------------------------------------------------- fixtures in real layouts
def make_cave(root, scenes=("balloons", "beads"), bands=31, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    cubes = {}
    for scene in scenes:
        folder = root / f"{scene}_ms" / f"{scene}_ms"
        folder.mkdir(parents=True)
        cube = rng.integers(0, 65535, (bands, h, w), dtype=np.uint16)
        for b in range(bands):
            Image.fromarray(cube[b]).save(folder / f"{scene}_ms_{b + 1:02d}.png")
        (folder.parent / f"{scene}_RGB.bmp").write_bytes(b"not a band")
        cubes[scene] = cube
    return cubes


def write_mat73(path, rad_hwc):
    """Like MATLAB's save -v7.3: HDF5 with a 512-byte user block, arrays stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("rad", data=np.ascontiguousarray(rad_hwc.transpose(2, 1, 0)))
        f.create_dataset("bands", data=np.linspace(400, 700, rad_hwc.shape[2]))


def test_cave_layout_loads_31_band_cubes(tmp_path):
    cubes = make_cave(tmp_path)
    images = load("cave", tmp_path)
    assert [im.name for im in images] == ["balloons", "beads"]
    for im in images:
        assert im.array.shape == (31, 40, 48)
        np.testing.assert_array_equal(im.array, cubes[im.name] / 65535.0)


def test_cave_scene_with_missing_bands_names_the_folder(tmp_path):
    make_cave(tmp_path, scenes=("cd",))
    (tmp_path / "cd_ms" / "cd_ms" / "cd_ms_31.png").unlink()
    with pytest.raises(ValueError, match=r"cd_ms.*30 band files.*prepare.bands = 31"):
        load("cave", tmp_path)


def test_icvl_mat73_loads_in_image_orientation(tmp_path):
    rng = np.random.default_rng(1)
    rad = rng.uniform(0, 4095, (36, 44, 31))  # (H, W, C) as in MATLAB; H ≠ W catches transposes
    write_mat73(tmp_path / "BGU_0403-1419-1.mat", rad)
    (im,) = load("icvl", tmp_path)
    assert im.name == "BGU_0403-1419-1" and im.array.shape == (31, 36, 44)
    np.testing.assert_allclose(im.array, rad.transpose(2, 0, 1))


def test_icvl_v5_mat_and_errors(tmp_path):
    import scipy.io

    rad = np.random.default_rng(2).uniform(0, 1, (20, 24, 31))
    scipy.io.savemat(tmp_path / "a.mat", {"rad": rad})
    (im,) = load("icvl", tmp_path)
    np.testing.assert_allclose(im.array, rad.transpose(2, 0, 1))
    scipy.io.savemat(tmp_path / "b.mat", {"cube": rad})
    with pytest.raises(ValueError, match=r"b.mat: no array 'rad'"):
        load("icvl", tmp_path)
    (tmp_path / "b.mat").unlink()
    write_mat73(tmp_path / "c.mat", rad[:, :, :30])
    with pytest.raises(ValueError, match=r"c.mat: 'rad' has 30 bands.*prepare.bands = 31"):
        load("icvl", tmp_path)
    (tmp_path / "c.mat").write_bytes(b"\x89HDF garbage")
    with pytest.raises(ValueError, match=r"c.mat: cannot read"):
        load("icvl", tmp_path)


def test_folder_reads_every_format(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    Image.fromarray(rgb).save(tmp_path / "photo2.jpg", quality=95)
    Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)).save(tmp_path / "g16.png")
    (tmp_path / "sub").mkdir()
    cube = rng.uniform(0, 1, (31, 20, 30)).astype(np.float32)
    np.save(tmp_path / "sub" / "chw.npy", cube)
    np.save(tmp_path / "hwc.npy", cube.transpose(1, 2, 0))
    import tifffile

    tifffile.imwrite(tmp_path / "cube.tif", cube)
    images = {im.name: im for im in load("folder", tmp_path)}
    assert sorted(images) == ["cube", "g16", "hwc", "photo", "photo2", "sub_chw"]
    assert images["photo"].array.shape == (3, 20, 30)
    np.testing.assert_array_equal(images["photo"].array, rgb.transpose(2, 0, 1) / 255.0)
    assert images["g16"].array.shape == (1, 20, 30) and images["g16"].array.max() <= 1
    for name in ("cube", "hwc", "sub_chw"):
        np.testing.assert_array_equal(images[name].array, cube)


def test_folder_errors_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match=r"broken.png: cannot read image"):
        load("folder", tmp_path)
    (tmp_path / "broken.png").unlink()
    np.save(tmp_path / "wrong.npy", np.zeros((7, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"wrong.npy: has shape \(7, 16, 16\)"):
        load("folder", tmp_path)
    np.save(tmp_path / "wrong.npy", np.full((31, 16, 16), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"wrong.npy: contains 7936 NaN or infinite"):
        load("folder", tmp_path)


def test_prepare_rejects_a_cube_with_the_wrong_band_count(tmp_path):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).uniform(size=(16, 32, 32)))
    p = PrepareParams(
        source="folder",
        path=str(tmp_path),
        images=None,
        bands=16,
        tile_size=16,
        scale=1.0,
        split=SplitParams(0, 0, 1),
    )
    prepare(p, 0, tmp_path / "out1", progress=False)  # 16 bands asked: fine
    with pytest.raises(ValueError, match=r"a.npy: has shape \(16, 32, 32\).*prepare.bands = 31"):
        prepare(dataclasses.replace(p, bands=31), 0, tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()  # nothing half-written


def test_prepare_errors_on_impossible_sizes_and_counts(tmp_path):
    make_cave(tmp_path / "cave", scenes=("a", "b"))
    p = PrepareParams(
        source="cave",
        path=str(tmp_path / "cave"),
        images=None,
        scale=1.0,
        tile_size=64,
        split=SplitParams(0, 0, 1),
    )
    with pytest.raises(ValueError, match=r"prepare.tile_size = 64: larger than image"):
        prepare(p, 0, tmp_path / "out", progress=False)
    p = dataclasses.replace(p, tile_size=16, split=SplitParams(1, 1, 1))
    with pytest.raises(ValueError, match=r"prepare.split = .*asks for 3 images.*only 2"):
        prepare(p, 0, tmp_path / "out", progress=False)


def test_prepare_on_cave_writes_tiles_and_manifest(tmp_path):
    make_cave(tmp_path / "cave", scenes=("a", "b", "c"))
    p = PrepareParams(
        source="cave",
        path=str(tmp_path / "cave"),
        images=None,
        scale=1.0,
        tile_size=16,
        tiles_per_image=2,
        split=SplitParams(1, 1, 1),
    )
    df, summary = prepare(p, 0, tmp_path / "clean", progress=False)
    assert len(df) == 6 and not summary.synthetic and not df.synthetic.any()
    assert set(df.image_id) == {f"{s}-t{k}" for s in "abc" for k in (0, 1)}
    assert df.groupby("source_image").split.nunique().max() == 1
    for row in df.itertuples():
        x = load_npy(tmp_path / "clean" / row.split / f"{row.image_id}.npy")
        assert x.shape == (31, 16, 16) and x.dtype == np.float32
        assert array_sha256(x) == row.sha256
        assert x.min() == 0 and x.max() == 1  # min-max per crop


# ------------------------------------------------------------------ the embedded default
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    p = PrepareParams(
        images=[
            "astronaut",
            "cat",
            "chelsea",
            "coffee",
            "rocket",
            "immunohistochemistry",
            "motorcycle_left",
            "retina",
            "hubble_deep_field",
        ]
    )
    runs = [prepare(p, 0, root / f"run{k}", progress=False) for k in range(2)]
    return root, runs


def test_embedded_default_is_deduplicated_and_split_by_image(embedded):
    _, [(df, summary), _] = embedded
    assert summary.duplicates_removed == {"chelsea": "cat"}
    assert summary.images == {"train": 2, "val": 1, "test": 5}
    groups = [set(df.loc[df.split == s, "source_image"]) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(set(df.content_sha256)) == len(df)


def test_embedded_cubes_are_synthetic_full_rank_and_quantised(embedded):
    root, [(df, summary), _] = embedded
    assert summary.synthetic and df.synthetic.all()
    assert (df.effective_rank > 3).all(), df[["image_id", "effective_rank"]]
    for row in df.itertuples():
        x = load_npy(root / "run0" / row.split / f"{row.image_id}.npy")
        assert x.shape == (31, 32, 32)
        levels = x.astype(np.float64) * 65535
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-2)


def test_prepare_is_bit_identical_when_rerun(embedded):
    root, [(a, sa), (b, sb)] = embedded
    assert list(a.sha256) == list(b.sha256) and sa.dataset_hash == sb.dataset_hash
    for row in a.itertuples():
        one = (root / "run0" / row.split / f"{row.image_id}.npy").read_bytes()
        two = (root / "run1" / row.split / f"{row.image_id}.npy").read_bytes()
        assert one == two


def test_another_seed_gives_another_split(tmp_path):
    p = PrepareParams(
        images=["astronaut", "coffee", "rocket", "chelsea"],
        scale=0.125,
        tile_size=16,
        n_endmembers=6,
        split=SplitParams(1, 1, 2),
    )
    splits = {
        tuple(prepare(p, s, tmp_path / str(s), progress=False)[0].sort_values("image_id").split)
        for s in range(6)
    }
    assert len(splits) > 1


def test_atomic_writes_get_the_umask_mode(tmp_path):
    import os

    from pipeline.io import atomic_dir, write_bytes

    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "a.txt", b"x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_bytes(b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
