"""Degraded cases with a forward operator: labels, config errors, the stored operator's exact
round trip, and A x of the degrade stage against the operators' own (FFT) implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.degrade.operators import Blur, Downsampling, Inpainting, gaussian_kernel
from pipeline.degrade.registry import Case
from pipeline.degrade.tasks import apply_operator, build_operator, load_degraded
from pipeline.io import save_npz
from pipeline.schema import ConfigError

OPERATORS = {
    "blur-g1.6": {"name": "blur", "sigma": 1.6},
    "blur-g1-zero": {"name": "blur", "sigma": 1.0, "padding": "zero"},
    "blur-m7": {"name": "blur", "kernel": "motion", "size": 7},
    "sr-x2": {"name": "downsample", "factor": 2},
    "sr-x4-box": {"name": "downsample", "factor": 4, "filter": "box"},
    "sr-x2-none": {"name": "downsample", "factor": 2, "filter": "none"},
    "inpaint-50": {"name": "inpaint", "missing": 0.5},
    "inpaint-30-spectra": {"name": "inpaint", "missing": 0.3, "spectra": True},
}


def clean(seed: int = 0, shape=(5, 16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("label", OPERATORS)
def test_label_joins_operator_and_noise(label):
    case = Case.from_param({"name": "noniid", "operator": OPERATORS[label]}, "degrade.cases[0]")
    assert case.label == f"{label}/noniid"
    assert case.task == label
    assert Case.from_param(case.to_param()) == case  # round trip through params


@pytest.mark.parametrize(
    ("operator", "message"),
    [
        ({"name": "shear"}, "degrade.cases[0].operator.name = 'shear': unknown operator"),
        ({"name": "blur", "sigma": -1}, "degrade.cases[0].operator.sigma"),
        ({"name": "blur", "kernel": "motion", "size": 8}, "degrade.cases[0].operator.size"),
        ({"name": "inpaint", "missing": 1.0}, "degrade.cases[0].operator.missing"),
        ({"name": "downsample", "factor": 3}, "degrade.cases[0].operator.factor"),
        ({"name": "blur", "sigm": 1}, "degrade.cases[0].operator.sigm"),
    ],
)
def test_bad_operators_are_named(operator, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Case.from_param({"name": "iid", "operator": operator}, "degrade.cases[0]")


@pytest.mark.parametrize("label", OPERATORS)
def test_stored_operator_rebuilds_exactly(label, tmp_path):
    """A degraded file's operator arrays round-trip bit for bit, and the rebuilt A gives the
    y of the draw (A x from NumPy in a fixed order) to rounding."""
    case = Case.from_param({"name": "iid", "sigma_255": 0, "operator": OPERATORS[label]})
    x = clean()
    y, info = case(x, np.random.default_rng(3))
    arrays = {"noisy": y, "sigma": info["sigma"], "mask": info["mask"], **info["operator"]}
    path = tmp_path / "case" / "img.npz"
    save_npz(path, arrays)
    loaded, A = load_degraded(path)
    for key, value in info["operator"].items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)
    with torch.no_grad():
        ax = A.A(torch.from_numpy(x.astype(np.float64))[None])[0].numpy()
    # σ = 0: y is A x rounded to float32 (inpainting: 0 where missing)
    assert y.shape == ax.shape
    np.testing.assert_allclose(y, ax, atol=1e-6, rtol=0)
    np.testing.assert_allclose(apply_operator(loaded, x), ax, atol=1e-12, rtol=0)


def test_operators_are_the_documented_ones():
    x = clean()
    case = Case.from_param({"name": "iid", "operator": OPERATORS["blur-g1.6"]})
    _, info = case(x, np.random.default_rng(0))
    A = build_operator(info["operator"])
    assert isinstance(A, Blur) and A.padding == "circular"
    np.testing.assert_allclose(A.kernel.numpy(), gaussian_kernel(1.6).numpy(), atol=1e-15)
    case = Case.from_param({"name": "iid", "operator": OPERATORS["sr-x2"]})
    y, info = case(x, np.random.default_rng(0))
    A = build_operator(info["operator"])
    assert isinstance(A, Downsampling) and A.factor == 2 and y.shape == (5, 8, 8)
    case = Case.from_param({"name": "iid", "operator": OPERATORS["inpaint-30-spectra"]})
    y, info = case(x, np.random.default_rng(0))
    A = build_operator(info["operator"])
    observed = info["operator"]["observed"]
    assert isinstance(A, Inpainting)
    assert (observed == observed[:1]).all()  # whole spectra missing
    assert abs((~observed[0]).mean() - 0.3) < 1 / 256
    assert (y[~observed] == 0).all()


def test_noise_is_drawn_on_a_x_and_the_draws_are_seeded():
    x = clean()
    case = Case.from_param({"name": "iid", "sigma_255": 10, "operator": OPERATORS["blur-m7"]})
    y1, i1 = case(x, np.random.default_rng(5))
    y2, i2 = case(x, np.random.default_rng(5))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(i1["operator"]["kernel"], i2["operator"]["kernel"])
    ax = apply_operator(i1["operator"], x)
    resid = (y1 - ax).ravel()
    assert abs(resid.std() - 10 / 255) < 0.1 * 10 / 255  # σ of the added noise
    _, i3 = case(x, np.random.default_rng(6))
    assert not np.array_equal(i1["operator"]["kernel"], i3["operator"]["kernel"])


def test_a_corrupt_operator_record_is_named(tmp_path):
    x = clean()
    case = Case.from_param({"name": "iid", "operator": OPERATORS["blur-g1.6"]})
    y, info = case(x, np.random.default_rng(0))
    arrays = {"noisy": y, "sigma": info["sigma"], "mask": info["mask"]}
    arrays["operator"] = np.array(['{"name": "blur", "sigma": -2}'])
    arrays["kernel"] = info["operator"]["kernel"]
    path = tmp_path / "bad.npz"
    save_npz(path, arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: not a valid operator record"):
        load_degraded(path)
