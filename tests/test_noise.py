"""Noise models: statistics, band selection, determinism and parameter handling."""

import numpy as np
import pytest

from pipeline.degrade.draws import Draw
from pipeline.degrade.noise.common import n_some_bands
from pipeline.degrade.registry import NOISE_MODELS, Case
from pipeline.evaluate.metrics import mpsnr
from pipeline.schema import ConfigError
from pipeline.seeding import rng_for

CASES = list(NOISE_MODELS)
SPARSE = {"stripe", "deadline", "impulse", "mixture"}


def draw(name, x, key="t", seed=0, **params):
    case = Case.from_param({"name": name, **params})
    return case(x, rng_for(seed, "test", case.label, key))


@pytest.mark.parametrize("name", CASES)
def test_output_contract(name, flat):
    y, info = draw(name, flat)
    assert y.dtype == np.float32 and y.shape == flat.shape
    assert info["sigma"].dtype == np.float32 and info["sigma"].shape == flat.shape
    assert info["mask"].dtype == bool and info["mask"].shape == flat.shape
    assert np.isfinite(y).all()
    assert info["mask"].any() if name in SPARSE else not info["mask"].any()


@pytest.mark.parametrize("name", CASES)
def test_gaussian_part_matches_the_true_sigma_map(name, flat):
    """On uncorrupted pixels, (y − x)/σ is standard normal: per band std within 5 %."""
    y, info = draw(name, flat)
    z = (y.astype(np.float64) - flat) / info["sigma"]
    for b in range(flat.shape[0]):
        keep = ~info["mask"][b]
        assert keep.sum() > 1000
        assert abs(z[b][keep].std() - 1.0) < 0.05, (name, b)
        assert abs(z[b][keep].mean()) < 0.05


@pytest.mark.parametrize(("sigma", "expected"), [(30, 30), (50, 50), (70, 70)])
def test_iid_sigma_is_the_asked_value(sigma, expected, flat):
    y, info = draw("iid", flat, sigma_255=sigma)
    np.testing.assert_allclose(info["sigma"], expected / 255, rtol=1e-6)
    per_band = (y - flat).std(axis=(1, 2)) * 255
    np.testing.assert_allclose(per_band, expected, rtol=0.05)


def test_noniid_sigmas_come_from_the_protocol_set(flat):
    y, info = draw("noniid", flat)
    drawn = np.asarray(info["draws"]["sigma_255"])
    assert set(np.round(drawn).astype(int)) <= {10, 30, 50, 70}
    np.testing.assert_allclose((y - flat).std(axis=(1, 2)) * 255, drawn, rtol=0.05)


def test_blind_draws_one_sigma_per_image_within_range(flat):
    sigmas = []
    for k in range(40):
        _, info = draw("blind", flat[:2, :32, :32], key=str(k))
        assert np.ptp(info["sigma"]) == 0
        sigmas.append(float(info["sigma"].flat[0]) * 255)
    assert min(sigmas) >= 10 and max(sigmas) <= 70 and np.std(sigmas) > 5


def test_spatial_sigma_map_is_smooth_and_spans_the_range(flat):
    _, info = draw("spatial", flat)
    s = info["sigma"].astype(np.float64) * 255
    for b in range(s.shape[0]):
        assert s[b].min() == pytest.approx(10, abs=1e-3)
        assert s[b].max() == pytest.approx(70, abs=1e-3)
        # smooth: neighbouring pixels differ by a small fraction of the range
        assert np.abs(np.diff(s[b], axis=0)).max() < 6 and np.abs(np.diff(s[b], axis=1)).max() < 6


def test_noniid_mean_mpsnr_matches_its_analytic_expectation():
    """E[PSNR_b] = E[−20 log10 σ_b] with σ_b uniform on {10, 30, 50, 70}/255 (≈ 18.0 dB),
    averaged over 4,340 band draws (per-band PSNR spreads ≈ 6 dB)."""
    x = np.full((31, 32, 32), 0.5)
    values = [mpsnr(x, draw("noniid", x, key=str(k))[0]) for k in range(140)]
    analytic = np.mean([-20 * np.log10(s / 255) for s in (10, 30, 50, 70)])
    assert analytic == pytest.approx(18.03, abs=0.01)
    assert np.mean(values) == pytest.approx(analytic, abs=0.3)


def corrupted_bands(info):
    return np.flatnonzero(info["mask"].any(axis=(1, 2)))


@pytest.mark.parametrize("name", ["stripe", "deadline", "impulse"])
@pytest.mark.parametrize("bands", [31, 3, 1])
def test_only_one_third_of_the_bands_is_corrupted(name, bands):
    x = np.full((bands, 64, 64), 0.5)
    y, info = draw(name, x)
    hit = corrupted_bands(info)
    assert len(hit) == max(1, bands // 3)
    sigma = info["sigma"][:, 0, 0]
    for b in set(range(bands)) - set(hit):  # untouched bands carry only their Gaussian noise
        r = (y[b] - x[b]) / sigma[b]
        assert np.abs(r).max() < 6 and abs(r.std() - 1) < 0.1


@pytest.mark.parametrize("name", ["stripe", "deadline"])
def test_column_corruptions_cover_whole_columns_at_the_asked_fraction(name, flat):
    widths = []
    for k in range(5):
        y, info = draw(name, flat, key=str(k))
        for b in corrupted_bands(info):
            m = info["mask"][b]
            cols = np.flatnonzero(m.any(axis=0))
            assert m[:, cols].all()  # down their full length
            widths.append(len(cols) / flat.shape[2])
            if name == "deadline":
                assert (y[b][:, cols] == 0).all()
            else:
                shift = (y[b][:, cols] - flat[b][:, cols]).mean(axis=0)
                assert np.abs(shift).max() <= 0.25 + 4 * info["sigma"][b, 0, 0] / np.sqrt(128)
    assert min(widths) >= 0.05 - 1 / 128 and max(widths) <= 0.15
    assert np.ptp(widths) > 0.03  # the fraction really is drawn per band


def test_stripe_shift_is_a_constant_offset_per_column(flat):
    y, info = draw("stripe", flat, shift=0.2, sigma_255=10)
    b = corrupted_bands(info)[0]
    cols = np.flatnonzero(info["mask"][b].any(axis=0))
    offset = (y[b][:, cols] - flat[b][:, cols]).mean(axis=0)
    np.testing.assert_allclose(offset, 0.2, atol=4 * (10 / 255) / np.sqrt(128))


def test_impulse_density_and_salt_pepper_balance(flat):
    y, info = draw("impulse", flat)
    records = info["draws"]["impulse"]
    assert len(records) == 10
    for r in records:
        b, d = r["band"], r["density"]
        assert d in (0.1, 0.3, 0.5, 0.7)
        m = info["mask"][b]
        assert m.mean() == pytest.approx(d, abs=0.02)
        salt = (y[b][m] == 1.0).mean()
        assert salt == pytest.approx(0.5, abs=0.03)
        assert np.isin(y[b][m], [0.0, 1.0]).all()


@pytest.mark.parametrize("bands", [31, 5, 3])
def test_mixture_band_sets_are_disjoint(bands):
    x = np.full((bands, 48, 48), 0.5)
    for k in range(10):
        _, info = draw("mixture", x, key=str(k))
        sets = [
            {r["band"] for r in info["draws"][kind]} for kind in ("stripe", "deadline", "impulse")
        ]
        n = max(1, bands // 3)
        assert [len(s) for s in sets] == [n, n, n]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


@pytest.mark.parametrize("bands", [1, 2])
def test_mixture_with_fewer_than_three_bands_overlaps(bands):
    x = np.full((bands, 32, 32), 0.5)
    _, info = draw("mixture", x)
    assert all(len(info["draws"][k]) == 1 for k in ("stripe", "deadline", "impulse"))


def test_dlw_training_draws_are_expressible(flat):
    """DLW's continuous draws: σ_b ~ U[10, 70], impulse ratio ~ U[0.1, 0.5]; and a mixture
    with column fraction ≤ 0.2 on overlapping band sets."""
    _, info = draw(
        "impulse", flat, sigma_255={"uniform": [10, 70]}, density={"uniform": [0.1, 0.5]}
    )
    s = np.asarray(info["draws"]["sigma_255"])
    assert s.min() >= 10 and s.max() <= 70 and len(np.unique(s)) == 31
    dens = [r["density"] for r in info["draws"]["impulse"]]
    assert min(dens) >= 0.1 and max(dens) <= 0.5 and len(set(dens)) == len(dens)
    overlap = False
    for k in range(20):
        _, info = draw(
            "mixture",
            flat[:, :64, :64],
            key=str(k),
            disjoint=False,
            column_fraction={"uniform": [0.0, 0.2]},
        )
        sets = [
            {r["band"] for r in info["draws"][kind]} for kind in ("stripe", "deadline", "impulse")
        ]
        overlap |= bool(sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert overlap


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_bits_other_seed_other_bits(name):
    x = np.full((31, 24, 24), 0.5)
    y1, i1 = draw(name, x, seed=3)
    y2, i2 = draw(name, x, seed=3)
    y3, _ = draw(name, x, seed=4)
    assert y1.tobytes() == y2.tobytes() and i1["mask"].tobytes() == i2["mask"].tobytes()
    assert y1.tobytes() != y3.tobytes()


def test_a_noise_draw_is_not_clipped(flat):
    y, _ = draw("iid", np.zeros((1, 64, 64)), sigma_255=50)
    assert y.min() < 0


def test_labels_name_cases_with_their_parameters():
    assert Case.from_param({"name": "iid", "sigma_255": 50}).label == "iid-50"
    assert Case.from_param("noniid").label == "noniid"
    custom = Case.from_param({"name": "impulse", "density": [0.5]})
    assert custom.label.startswith("impulse-") and len(custom.label) == len("impulse-") + 6
    assert Case.from_param({"name": "stripe", "label": "my-stripe"}).label == "my-stripe"
    assert '"density":[0.5]' in custom.params_json


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "iid", "sigma_255": -5}, r"sigma_255 = -5.0: values must lie in \[0, 255\]"),
        ({"name": "impulse", "density": [0.1, 1.5]}, r"density = \[0.1, 1.5\]"),
        ({"name": "stripe", "band_fraction": 1.5}, r"band_fraction = 1.5"),
        ({"name": "stripe", "column_fraction": {"uniform": [0.3, 0.1]}}, r"low must not exceed"),
        ({"name": "gauss"}, r"name = 'gauss': unknown noise case"),
        ({"name": "iid", "sgima_255": 5}, r"sgima_255: unknown key"),
        ({"name": "iid", "label": "../escape"}, r"label = '../escape'"),
        ({"name": "iid", "sigma_255": "fifty"}, r"sigma_255 = 'fifty'"),
    ],
)
def test_bad_case_parameters_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        Case.from_param(spec, "degrade.cases[0]")


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        draw("iid", np.full((3, 8, 8), np.nan))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        draw("iid", np.zeros((8, 8)))


def test_draw_kinds():
    rng = np.random.default_rng(0)
    assert Draw.from_param(5).sample(rng) == 5
    assert set(Draw.from_param([1, 2]).sample(rng, 100)) == {1.0, 2.0}
    u = Draw.from_param({"uniform": [1, 2]}).sample(rng, 1000)
    assert u.min() >= 1 and u.max() <= 2 and u.std() > 0.25
    assert n_some_bands(31, 1 / 3) == 10 and n_some_bands(3, 1 / 3) == 1


def test_quadrants_put_one_sigma_on_each_quadrant(flat):
    _, info = draw("quadrants", flat)
    s = info["sigma"].astype(np.float64) * 255
    h, w = s.shape[1:]
    quads = [s[:, : h // 2, : w // 2], s[:, : h // 2, w // 2 :], s[:, h // 2 :, : w // 2],
             s[:, h // 2 :, w // 2 :]]  # fmt: skip
    for q, expected in zip(quads, (2.55, 5.1, 7.65, 10.2), strict=True):
        np.testing.assert_allclose(q, expected, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"sigma_255 = \[1.0, 2.0, 3.0\]: needs 4 values"):
        Case.from_param({"name": "quadrants", "sigma_255": [1, 2, 3]})
