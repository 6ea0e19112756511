"""Weight maps: the built-in ones (oracle by hand, the handcrafted recipe on the pipeline's own
noise models), DLW's learned map, and the contract every weighting's map is held to."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from pipeline.degrade.registry import Case
from pipeline.evaluate import weightings as W
from pipeline.evaluate.metrics import weight_auc
from pipeline.methods.dlw import DLW
from pipeline.methods.dlw.net import DLWNet

# AUC of −w for the true mask, over 6 seeded 31×32×32 draws: (minimum mean, minimum per draw).
# Stripes in the σ = 50–70/255 bands of a 32-row tile are often below the noise of a column
# mean (σ/√32 ≈ 0.04 vs shifts from U[−0.25, 0.25]): single draws reach ≈ 0.78.
SPARSE_CASES = {
    "impulse": (0.9, 0.9),
    "deadline": (0.8, 0.8),
    "stripe": (0.8, 0.75),
    "mixture": (0.9, 0.9),
}
SEEDS = range(6)


def smooth_cube(bands=31, h=32, w=32, seed=0):
    """Smooth in space and spectrum: 4 Gaussian-bump spectra mixed by blurred random
    abundances, values in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    lam = np.linspace(0, 1, bands)
    centres, widths = rng.uniform(0, 1, 4), rng.uniform(0.15, 0.4, 4)
    spectra = 0.3 + np.exp(-((lam[None] - centres[:, None]) ** 2) / (2 * widths[:, None] ** 2))
    ab = gaussian_filter(rng.random((4, h, w)), (0, 4, 4), mode="wrap")
    x = np.einsum("kc,khw->chw", spectra, ab / ab.sum(axis=0))
    return 0.2 + 0.6 * (x - x.min()) / (x.max() - x.min())


def degrade(name, x, seed=0):
    case = Case.from_param({"name": name})
    return case(x, np.random.default_rng(seed))


def tiny_net():
    torch.manual_seed(0)
    return DLWNet(width=4, depth=1).eval()


def choose_inputs(kind):
    """compute_weights keyword arguments for the built-in ``kind`` on a mixture-noise cube."""
    y, info = degrade("mixture", smooth_cube(), seed=1)
    extra = {
        "unweighted": {},
        "oracle": {"sigma": info["sigma"], "mask": info["mask"]},
        "handcrafted": {},
    }[kind]
    return y, extra


def test_oracle_by_hand():
    sigma = np.array([[[0.1, 0.1], [0.2, 0.2]], [[0.5, 0.1], [0.1, 0.1]]], np.float32)
    mask = np.zeros((2, 2, 2), bool)
    mask[0, 0, 1] = mask[1, 1, 1] = True
    raw = np.array([[[100, 0], [25, 25]], [[4, 100], [100, 0]]], float)
    expected = raw / raw.mean()  # mean of raw: 354 / 8
    got = W.compute_weights("oracle", np.zeros((2, 2, 2)), sigma=sigma, mask=mask)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float32


def test_oracle_of_iid_noise_is_unweighted():
    y, info = degrade("iid", smooth_cube(4, 16, 16))
    w = W.compute_weights("oracle", y, sigma=info["sigma"], mask=info["mask"])
    np.testing.assert_allclose(w, 1.0, atol=1e-6)


def test_oracle_falls_back_to_uniform_when_everything_is_corrupted():
    w = W.compute_weights("oracle", np.zeros((1, 3, 3)), sigma=0.1, mask=np.ones((1, 3, 3), bool))
    np.testing.assert_array_equal(w, np.ones((1, 3, 3), np.float32))


def test_the_built_ins_are_the_three_classical_weightings():
    assert list(W.BUILTIN) == ["unweighted", "oracle", "handcrafted"]
    assert W.BUILTIN["oracle"] and not W.BUILTIN["unweighted"] and not W.BUILTIN["handcrafted"]


@pytest.mark.parametrize("kind", list(W.BUILTIN))
def test_every_builtin_map_is_float32_finite_nonnegative_mean_one(kind):
    y, extra = choose_inputs(kind)
    w = W.compute_weights(kind, y, **extra)
    assert w.dtype == np.float32 and w.shape == y.shape
    assert np.isfinite(w).all() and (w >= 0).all()
    assert float(w.mean(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)


def test_dlw_map_is_float32_positive_mean_one():
    y, _ = choose_inputs("unweighted")
    w = DLW.weights(tiny_net(), y)
    assert w.dtype == np.float32 and w.shape == y.shape
    assert np.isfinite(w).all() and (w > 0).all()
    # N·softmax + 1e-4 (Rui et al.): mean 1 + 1e-4, up to float32 rounding
    assert float(w.mean(dtype=np.float64)) == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize(
    ("kind", "kwargs", "words"),
    [
        ("bogus", {}, "unknown weighting 'bogus'"),
        ("oracle", {}, "needs sigma and mask"),
        ("oracle", {"sigma": 0.1}, "needs mask"),
        ("oracle", {"mask": np.zeros((2, 4, 4), bool)}, "needs sigma"),
        ("oracle", {"sigma": 0.0, "mask": np.zeros((2, 4, 4), bool)}, "sigma must be > 0"),
        ("oracle", {"sigma": np.ones((3, 4, 4)), "mask": False}, "does not fit"),
        # learned weightings are their method's (DLW.weights), not a built-in kind
        ("dlw", {}, "unknown weighting 'dlw'"),
    ],
)
def test_bad_requests_raise_clear_errors(kind, kwargs, words):
    with pytest.raises(ValueError, match=words):
        W.compute_weights(kind, np.full((2, 4, 4), 0.5), **kwargs)


def test_non_finite_noisy_image_is_rejected():
    y = np.full((2, 4, 4), 0.5)
    y[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="noisy contains NaN"):
        W.compute_weights("handcrafted", y)


def test_dlw_weights_are_the_nets_output():
    net = tiny_net()
    y, _ = choose_inputs("unweighted")
    with torch.no_grad():
        expected = net(torch.from_numpy(y[None].astype(np.float32)))[0].numpy()
    got = DLW.weights(net, y)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.ptp(got) > 0  # a random net is not the uniform map


def test_a_learned_weighting_computes_its_methods_map():
    y, info = degrade("mixture", smooth_cube(4, 16, 16), seed=4)
    item = {"noisy": y, "sigma": info["sigma"], "mask": info["mask"]}
    net = tiny_net()
    learned = W.Weighting("dlw:nn", "dlw", "nn", 0, "models/dlw/nn/seed-0.pt", method_cls=DLW)
    np.testing.assert_array_equal(learned.compute(item, net), DLW.weights(net, y))
    assert W.Weighting("unweighted").compute(item) is None  # the solvers take w = None
    oracle = W.compute_weights("oracle", y, sigma=info["sigma"], mask=info["mask"])
    np.testing.assert_array_equal(W.Weighting("oracle", oracle_informed=True).compute(item), oracle)


def test_check_map_passes_a_good_map_as_float32():
    w = np.full((2, 3, 4), 0.5)
    got = W.check_map(w, (2, 3, 4), "dlw:nn")
    assert got.dtype == np.float32 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, 0.5)
    np.testing.assert_array_equal(W.check_map(np.zeros((2, 3, 4)), (2, 3, 4), "x"), 0.0)


def bad_map(kind):
    w = np.ones((2, 3, 4), np.float32)
    if kind == "shape":
        return w[:, :, :3], r"weighting dlw:nn\+tv returned shape \(2, 3, 3\) for an image of"
    if kind == "nan":
        w[1, 2, 0] = np.nan
    elif kind == "inf":
        w[0, 0, 0] = np.inf
    else:
        w[0, 1, 1] = -1e-3
    return w, r"weighting dlw:nn\+tv returned a non-finite or negative weight"


@pytest.mark.parametrize("kind", ["shape", "nan", "inf", "negative"])
def test_check_map_rejects_a_bad_map_naming_the_weighting(kind):
    w, words = bad_map(kind)
    with pytest.raises(ValueError, match=words):
        W.check_map(w, (2, 3, 4), "dlw:nn+tv")


@pytest.mark.parametrize("kind", ["shape", "nan", "negative"])
def test_a_learned_weighting_is_held_to_the_map_contract(kind):
    """A method's map passes :func:`check_map` before any solver sees it."""
    w, words = bad_map(kind)

    class Returns:
        @classmethod
        def weights(cls, part, noisy):
            return w

    item = {"noisy": np.full((2, 3, 4), 0.5, np.float32)}
    learned = W.Weighting("dlw:nn+tv", "dlw", "nn+tv", 0, method_cls=Returns)
    with pytest.raises(ValueError, match=words):
        learned.compute(item)


def gaussian_cube(sigma, seed=0):
    x = smooth_cube(4, 128, 128, seed)
    return x + sigma * np.random.default_rng(seed + 100).standard_normal(x.shape)


def test_mad_sigma_estimate_on_gaussian_noise():
    sigma = 30 / 255
    est = W.estimate_band_sigma(gaussian_cube(sigma))
    np.testing.assert_allclose(est, sigma, rtol=0.10)


def test_mad_sigma_estimate_survives_30_percent_salt_and_pepper():
    sigma = 30 / 255
    y = gaussian_cube(sigma)
    rng = np.random.default_rng(7)
    hit = rng.random(y.shape[1:]) < 0.3
    y[1][hit] = (rng.random(hit.sum()) < 0.5).astype(float)
    est = W.estimate_band_sigma(y)
    assert est[1] == pytest.approx(sigma, rel=0.20)
    np.testing.assert_allclose(est, sigma, rtol=0.10)  # the other bands are untouched


@pytest.mark.parametrize("name", list(SPARSE_CASES))
def test_handcrafted_weights_find_protocol_corruptions(name):
    aucs = []
    for seed in SEEDS:
        y, info = degrade(name, smooth_cube(seed=seed), seed=seed)
        aucs.append(weight_auc(W.compute_weights("handcrafted", y), info["mask"]))
    mean_floor, each_floor = SPARSE_CASES[name]
    assert np.mean(aucs) >= mean_floor and min(aucs) >= each_floor, (name, np.round(aucs, 3))


def test_column_test_flags_a_stripe_and_pixel_test_an_outlier():
    """Without range-end readings: a column shifted by 0.1 in a σ = 10/255 band (≈ 12 std of a
    32-row column mean) is flagged whole, one shifted by 0.005 (≈ 0.6 std) is not; a single
    pixel off by 0.3 (≈ 7.6 σ) is flagged."""
    sigma = 10 / 255
    y = smooth_cube(3, 32, 32) + sigma * np.random.default_rng(8).standard_normal((3, 32, 32))
    y[1, :, 7] += 0.1
    y[1, :, 20] += 0.005
    y[2, 16, 16] += 0.3
    flagged = W.detect_corrupted(y, W.estimate_band_sigma(y))
    assert flagged[1, :, 7].all()
    assert flagged[1, :, 20].mean() < 0.1
    assert flagged[2, 16, 16]
    assert flagged.mean() < 0.05


def test_handcrafted_weights_fall_with_the_band_sigma():
    y, info = degrade("noniid", smooth_cube(), seed=2)
    w = W.compute_weights("handcrafted", y)
    band_sigma = info["sigma"][:, 0, 0]
    band_w = np.median(w, axis=(1, 2))
    assert spearmanr(band_sigma, band_w).statistic < -0.9
    lower, higher = np.meshgrid(band_sigma, band_sigma, indexing="ij")
    pairs = lower < higher - 1e-6  # every pair of bands of distinct σ is ordered
    assert pairs.sum() > 100
    assert np.all(band_w[:, None] > band_w[None, :], where=pairs)
    # w ∝ 1/σ̂²: the σ implied by each band's weight is the true σ within 20 % (up to scale)
    implied = 1 / np.sqrt(band_w)
    implied *= np.median(band_sigma / implied)
    np.testing.assert_allclose(implied, band_sigma, rtol=0.2)


def test_handcrafted_flags_get_the_flag_factor():
    y, _ = degrade("deadline", smooth_cube(), seed=3)
    w = W.compute_weights("handcrafted", y).astype(np.float64)
    dead = y == 0
    assert dead.any()
    for b in np.unique(np.nonzero(dead)[0]):
        clean_w = np.median(w[b][~dead[b]])
        np.testing.assert_allclose(w[b][dead[b]], W.FLAG_FACTOR * clean_w, rtol=1e-5)


def test_a_method_weighting_expands_to_the_variants_that_give_a_map(tmp_path):
    """``guidance`` lists its variants with a σ̂ net; the one without (``none``) is skipped,
    and naming it alone is an error that says why."""
    from pipeline.evaluate.weightings import plan_weightings

    for variant in ("alternating-tiny", "naive-tiny", "none-tiny"):
        path = tmp_path / "models" / "guidance" / variant / "seed-0.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    labels = [w.label for w in plan_weightings(["unweighted", "guidance"], tmp_path)]
    assert labels == ["unweighted", "guidance:alternating-tiny", "guidance:naive-tiny"]
    with pytest.raises(ValueError, match="variant 'none-tiny' of 'guidance' gives no weight map"):
        plan_weightings(["guidance:none-tiny"], tmp_path)
