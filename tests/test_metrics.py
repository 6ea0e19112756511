"""Image and weight-map metrics: against scikit-image, hand computations and brute force."""

from itertools import product

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.evaluate import metrics as M

METRICS = ["mpsnr", "mssim", "sam", "ergas"]
PAIRS = ["noise", "smooth", "constant_band", "out_of_range", "small"]


def choose_metric(name):
    return {"mpsnr": M.mpsnr, "mssim": M.mssim, "sam": M.sam, "ergas": M.ergas}[name]


def choose_pair(name, seed=0):
    """(clean, estimate) float64 pairs of different kinds, seeded."""
    rng = np.random.default_rng(seed)
    if name == "noise":
        x = rng.random((3, 16, 20))
        return x, x + 0.1 * rng.standard_normal(x.shape)
    if name == "smooth":
        x = gaussian_filter(rng.random((4, 24, 17)), (0, 3, 3))
        return x, gaussian_filter(x + 0.05 * rng.standard_normal(x.shape), (0, 1, 1))
    if name == "constant_band":
        x = rng.random((2, 12, 12))
        x[1] = 0.4
        y = x + 0.02 * rng.standard_normal(x.shape)
        y[1] = 0.6  # both constant: only the luminance term is left
        return x, y
    if name == "out_of_range":  # noisy inputs are not clipped
        x = rng.random((2, 13, 15))
        return x, x + 0.4 * rng.standard_normal(x.shape)
    if name == "small":  # exactly one window
        x = rng.random((2, 11, 11))
        return x, 0.5 * x + 0.2
    raise ValueError(name)


@pytest.mark.parametrize("pair", PAIRS)
def test_ssim_matches_scikit_image_per_band(pair):
    x, y = choose_pair(pair)
    ref = [
        structural_similarity(
            x[b],
            y[b],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for b in range(x.shape[0])
    ]
    np.testing.assert_allclose(M.band_ssim(x, y), ref, rtol=0, atol=1e-6)
    assert M.mssim(x, y) == pytest.approx(np.mean(ref), abs=1e-6)


@pytest.mark.parametrize("pair", PAIRS)
def test_psnr_matches_scikit_image_per_band(pair):
    x, y = choose_pair(pair)
    ref = [peak_signal_noise_ratio(x[b], y[b], data_range=1.0) for b in range(x.shape[0])]
    np.testing.assert_allclose(M.band_psnr(x, y), ref, rtol=0, atol=1e-6)
    assert M.mpsnr(x, y) == pytest.approx(np.mean(ref), abs=1e-6)


def test_ssim_rejects_images_smaller_than_its_window():
    x = np.zeros((2, 10, 30))
    with pytest.raises(ValueError, match="11"):
        M.mssim(x, x)


def test_sam_by_hand_with_a_dead_pixel():
    """2 bands × 2×2 pixels: angles 0, π/2, π/4 and a dead (all-zero) clean spectrum → π/2."""
    clean = np.zeros((2, 2, 2))
    est = np.zeros((2, 2, 2))
    spectra = {
        (0, 0): ([1.0, 0.0], [3.0, 0.0]),  # same direction, other length: 0
        (0, 1): ([0.0, 1.0], [1.0, 0.0]),  # orthogonal: π/2
        (1, 0): ([1.0, 1.0], [1.0, 0.0]),  # π/4
        (1, 1): ([0.0, 0.0], [0.5, 0.5]),  # dead line pixel: finite, cosine 0 → π/2
    }
    for (i, j), (a, b) in spectra.items():
        clean[:, i, j], est[:, i, j] = a, b
    expected = (0 + np.pi / 2 + np.pi / 4 + np.pi / 2) / 4
    assert M.sam(clean, est) == pytest.approx(expected, abs=1e-9)
    # both spectra dead: still finite
    assert np.isfinite(M.sam(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))))


def test_sam_of_opposite_and_identical_spectra():
    rng = np.random.default_rng(1)
    x = rng.random((5, 3, 4)) + 0.1
    assert M.sam(x, -2.0 * x) == pytest.approx(np.pi, abs=1e-6)
    assert M.sam(x, 7.0 * x) == pytest.approx(0.0, abs=1e-6)  # clipping: no NaN from cos > 1


def test_sam_is_nan_for_one_band():
    x = np.ones((1, 4, 4))
    assert np.isnan(M.sam(x, x))


def test_ergas_by_hand():
    """Band means 0.5 and 0.25, RMSE 0.1 both: 100·sqrt((0.2² + 0.4²)/2) = 100·sqrt(0.1)."""
    clean = np.stack([np.full((2, 2), 0.5), np.array([[0.0, 0.5], [0.5, 0.0]])])
    est = clean + np.array([[[0.1, -0.1], [0.1, -0.1]], [[0.1, 0.1], [-0.1, -0.1]]])
    assert M.ergas(clean, est) == pytest.approx(100 * np.sqrt(0.1), rel=1e-12)
    assert M.ergas(clean, clean) == 0.0


def test_ergas_names_a_zero_mean_band():
    clean = np.ones((3, 2, 2))
    clean[2] = 0.0
    with pytest.raises(ValueError, match=r"band\(s\) \[2\]"):
        M.ergas(clean, clean + 0.1)


@pytest.mark.parametrize("name", METRICS)
def test_identical_images_score_perfect(name):
    x, _ = choose_pair("smooth")
    value = choose_metric(name)(x, x)
    perfect = {"mpsnr": np.inf, "mssim": 1.0, "sam": 0.0, "ergas": 0.0}[name]
    assert value == pytest.approx(perfect, abs=1e-6)


@pytest.mark.parametrize("name", METRICS)
def test_worse_estimates_score_worse(name):
    rng = np.random.default_rng(2)
    x, _ = choose_pair("smooth")
    n = rng.standard_normal(x.shape)
    small, large = choose_metric(name)(x, x + 0.02 * n), choose_metric(name)(x, x + 0.2 * n)
    assert small > large if name in ("mpsnr", "mssim") else small < large


BAD = ["shape", "ndim", "nan_clean", "inf_estimate"]


def choose_bad(kind):
    x = np.full((2, 12, 12), 0.5)
    if kind == "shape":
        return x, x[:, :11], "shape"
    if kind == "ndim":
        return x[0], x[0], "shape"
    if kind == "nan_clean":
        bad = x.copy()
        bad[1, 3, 3] = np.nan
        return bad, x, "clean"
    bad = x.copy()
    bad[0, 0, 0] = np.inf
    return x, bad, "estimate"


@pytest.mark.parametrize(("name", "bad"), list(product(["mssim", "sam", "ergas"], BAD)))
def test_bad_inputs_raise_naming_the_problem(name, bad):
    clean, est, words = choose_bad(bad)
    with pytest.raises(ValueError, match=words):
        choose_metric(name)(clean, est)


@pytest.mark.parametrize("bad", BAD)
def test_psnr_rejects_bad_inputs(bad):
    clean, est, _ = choose_bad(bad)
    with pytest.raises(ValueError):
        M.mpsnr(clean, est)


def test_all_metrics_agrees_with_each_metric():
    x, y = choose_pair("noise")
    got = M.all_metrics(x, y)
    assert set(got) == set(METRICS)
    for name in METRICS:
        assert got[name] == choose_metric(name)(x, y)
        assert isinstance(got[name], float)


# ------------------------------------------------------------------ weight maps

AUC_CASES = {
    # (w, mask, expected): −w detects mask; ties count ½
    "perfect": ([1, 2, 3, 4], [1, 1, 0, 0], 1.0),
    "inverted": ([3, 4, 1, 2], [1, 1, 0, 0], 0.0),
    "constant": ([2, 2, 2, 2, 2], [1, 0, 0, 1, 0], 0.5),
    "ties_balanced": ([1, 1, 2, 2], [1, 0, 1, 0], 0.5),
    "one_tie": ([0, 1, 1, 3], [1, 1, 0, 0], 3.5 / 4),
    "three_to_one": ([0.5, 0.1, 0.3, 0.2], [0, 1, 0, 0], 1.0),
    "middle": ([0.5, 0.25, 0.1, 0.3], [0, 1, 0, 0], 2 / 3),
}


@pytest.mark.parametrize("case", list(AUC_CASES))
def test_weight_auc_hand_cases(case):
    w, mask, expected = AUC_CASES[case]
    assert M.weight_auc(np.asarray(w, float), np.asarray(mask, bool)) == pytest.approx(expected)


def test_weight_auc_equals_a_brute_force_pair_count():
    rng = np.random.default_rng(3)
    w = rng.integers(0, 6, size=(3, 7, 5)).astype(np.float32)  # many ties
    mask = rng.random(w.shape) < 0.3
    pos, neg = w[mask], w[~mask]
    diff = pos[:, None] - neg[None, :]
    brute = (np.sum(diff < 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert M.weight_auc(w, mask) == pytest.approx(brute, abs=1e-12)
    assert 0.3 < brute < 0.7  # a random map: the test is not trivially 0 or 1
    assert M.weight_auc(-w, mask) == pytest.approx(1 - brute, abs=1e-12)


@pytest.mark.parametrize("fill", [False, True])
def test_weight_auc_is_nan_without_both_classes(fill):
    assert np.isnan(M.weight_auc(np.arange(6.0), np.full(6, fill)))


def test_weight_maps_are_validated():
    with pytest.raises(ValueError, match="shape"):
        M.weight_auc(np.ones((2, 3)), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="w contains NaN"):
        M.weight_auc(np.array([1.0, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="boolean"):
        M.weight_auc(np.ones(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="w_oracle contains NaN"):
        M.oracle_correlation(np.ones(2), np.array([np.inf, 1.0]))


def test_oracle_correlation_is_pearson():
    rng = np.random.default_rng(4)
    a = rng.random((2, 4, 5))
    b = a + 0.5 * rng.random(a.shape)
    assert M.oracle_correlation(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert M.oracle_correlation(a, 3 * a + 1) == pytest.approx(1.0)
    assert M.oracle_correlation(a, -a) == pytest.approx(-1.0)


def test_oracle_correlation_is_nan_for_a_constant_map():
    a = np.random.default_rng(5).random((2, 3, 3))
    assert np.isnan(M.oracle_correlation(np.ones_like(a), a))
    assert np.isnan(M.oracle_correlation(a, np.full_like(a, 2.0)))
