"""DLWnet's exact layouts, its bfloat16 precision and the checkpointed unrolled solve
(pipeline/methods/dlw/net.py, bilevel.py): same numbers, same checkpoints, same gradients."""

from __future__ import annotations

import pytest
import torch

from pipeline.methods import precision as precision_module
from pipeline.methods.dlw import net as dlw_net
from pipeline.methods.dlw.bilevel import unrolled, upper_loss
from pipeline.methods.dlw.net import DLWNet, resolve_layout, resolve_precision
from pipeline.methods.dlw.trainer import TrialSpec, init_net
from pipeline.models.registry import build_model

EXACT = ("separable", "separable_cl", "conv3d", "conv3d_cl")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _data(seed: int = 0, b: int = 2, c: int = 7, s: int = 12):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, c, s, s, generator=g)
    noisy = clean + 0.1 * torch.randn(b, c, s, s, generator=g)
    return noisy, clean


def _net(layout: str, precision: str = "fp32", width: int = 6, depth: int = 2) -> DLWNet:
    torch.manual_seed(3)
    return DLWNet(width, depth, layout, precision)


def _grads(net: DLWNet, noisy: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
    y = noisy.clone().requires_grad_()
    h = net.scores(y)
    # A loss that weighs every score differently, so a permuted or misplaced output shows.
    weights = torch.linspace(-1, 2, h.numel()).reshape(h.shape)
    (h * weights).sum().backward()
    return h.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}, y.grad


def test_every_layout_gives_the_same_scores_and_gradients():
    noisy, _ = _data()
    ref_h, ref_g, ref_y = _grads(_net("conv3d"), noisy)
    for layout in ("separable", "separable_cl", "conv3d_cl"):  # against the paper's Conv3d
        h, g, gy = _grads(_net(layout), noisy)
        assert rel(h, ref_h) <= 1e-5, layout
        assert rel(gy, ref_y) <= 1e-5, layout
        for k, v in ref_g.items():
            assert rel(g[k], v) <= 1e-5, (layout, k)


def test_spectral_weight_gradient_by_matrix_products_equals_onednn(monkeypatch):
    """From ``SPECTRAL_GEMM_WIDTH`` on, ``separable_cl`` takes the spectral kernels' weight
    gradient from three matrix products over shifted bands: the same scores, input and other
    gradients bit for bit, the spectral weights' and biases' to 1e-5, all against Conv3d."""
    noisy, _ = _data()
    runs, calls = {}, []
    apply = dlw_net._SpectralConv.apply

    def counted(*args):
        calls.append(1)
        return apply(*args)

    monkeypatch.setattr(dlw_net._SpectralConv, "apply", counted)
    for threshold in (1, 10**9):
        monkeypatch.setattr(dlw_net, "SPECTRAL_GEMM_WIDTH", threshold)
        calls.clear()
        runs[threshold] = _grads(_net("separable_cl", width=8, depth=3), noisy)
        assert len(calls) == (3 if threshold == 1 else 0)
    (h, g, gy), (h0, g0, gy0) = runs[1], runs[10**9]
    assert torch.equal(h, h0) and torch.equal(gy, gy0)
    _, ref_g, _ = _grads(_net("conv3d", width=8, depth=3), noisy)
    for k, v in g0.items():
        if k.startswith("spectral."):
            assert 0 < rel(g[k], v) <= 1e-5, k  # another summation order
            assert rel(g[k], ref_g[k]) <= 1e-5, k
        else:
            assert torch.equal(g[k], v), k


def test_each_layout_takes_its_own_path():
    """The 3-D convolutions run (on channels-last activations) only in the conv3d layouts."""
    noisy, _ = _data()
    conv3d = torch.nn.functional.conv3d

    def run(layout: str) -> list[bool]:
        seen = []

        def spy(z, weight, *args, **kwargs):
            seen.append(z.shape[1] > 1 and z.is_contiguous(memory_format=torch.channels_last_3d))
            return conv3d(z, weight, *args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dlw_net.F, "conv3d", spy)
            _net(layout)(noisy)
        return seen

    assert run("separable") == [False]  # only the (3, 3, 3) head is a 3-D convolution
    assert run("separable_cl") == []  # its head is a 2-D convolution too (net.py)
    # The second convolution's input has width channels: channels-last only in conv3d_cl.
    assert len(run("conv3d")) == 5 and not any(run("conv3d"))  # depth 2: 2 × 2 + head
    assert all(run("conv3d_cl")[1:])


def test_layouts_share_one_checkpoint_layout():
    states = {}
    noisy, _ = _data()
    for layout in EXACT:
        net = _net(layout)
        # SGD, not Adam: the head's bias has a zero gradient up to rounding (the softmax of the
        # weights ignores a constant shift), which Adam would blow up to a ±lr step.
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(noisy).square().mean().backward()
        opt.step()
        states[layout] = net.state_dict()
    ref = states["conv3d"]
    for layout, state in states.items():
        assert list(state) == list(ref), layout
        for k, v in state.items():
            assert v.shape == ref[k].shape and v.is_contiguous(), (layout, k)
            # One SGD step from the same init: equal to far below the step size.
            assert float((v - ref[k]).abs().max()) <= 1e-5, (layout, k)
    # A checkpoint written under one layout loads under another and computes the same map.
    back = DLWNet.from_state_dict(states["conv3d_cl"], layout="separable")
    again = DLWNet.from_state_dict(states["conv3d_cl"], layout="conv3d_cl")
    assert rel(back(noisy), again(noisy)) <= 1e-5


def test_the_layout_rule():
    assert resolve_layout("auto") == "separable_cl"
    for layout in EXACT:
        assert resolve_layout(layout) == layout
    with pytest.raises(ValueError, match="layout"):
        resolve_layout("nhwc")
    with pytest.raises(ValueError, match="precision"):
        DLWNet(4, 1, precision="fp16")


def test_default_trial_takes_the_channels_last_float32_path():
    """The default params (width 16, layout auto, precision fp32) compute exactly the
    ``separable_cl`` path in float32."""
    net = init_net(TrialSpec(source_set="tv", seed_index=0))
    assert net.resolved(torch.device("cpu")) == ("separable_cl", "fp32")
    noisy, _ = _data(b=1, c=5, s=8)
    assert torch.equal(net.scores(noisy), net._separable_cl(noisy))


def test_auto_precision_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda device_type="cpu": True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "native_bf16", lambda device_type="cpu": False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        precision_module.set_precision(DLWNet(4, 1), "fp16")


# bfloat16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 2e-3): the scores move by ~2e-3
# relative (measured 2.2e-3 here), the weight map, a float32 softmax of them, by 2e-4, and the
# upper loss through the float32 TV solve by 7e-6. Stated tolerance of a bf16 step's loss:
# 1e-3 relative to the float32 step's; of its gradient: cosine ≥ 0.999 (measured 0.99997).
BF16_LOSS_RTOL = 1e-3


@pytest.mark.parametrize("layout", ["separable", "separable_cl", "conv3d_cl"])
def test_bf16_step_loss_is_close_to_float32(layout):
    noisy, clean = _data(b=2, c=6, s=16)
    tv = [build_model("tv")]
    out = {}
    for precision in ("fp32", "bf16"):
        net = _net(layout, precision, width=8)
        loss, w = upper_loss(net, tv, noisy, clean)
        loss.backward()
        assert w.dtype == torch.float32 and loss.dtype == torch.float32
        grad = torch.cat([p.grad.flatten() for p in net.parameters()])
        out[precision] = (float(loss), w.detach(), grad, net.scores(noisy).detach())
    (l32, w32, g32, h32), (l16, w16, g16, h16) = out["fp32"], out["bf16"]
    assert abs(l16 - l32) <= BF16_LOSS_RTOL * l32
    assert rel(w16, w32) <= 2e-3
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) >= 0.999
    # bf16 really ran: the scores differ from float32 by more than float32 rounding.
    assert rel(h16, h32) > 1e-4


@pytest.mark.parametrize("model", ["tv", "nn", "tvs"])
def test_checkpointed_unrolled_solve_has_the_same_gradients(model):
    noisy, clean = _data(b=2, c=6, s=10)
    m = build_model(model)
    grads, xs = [], []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        w = (0.5 + torch.rand(noisy.shape)).requires_grad_()
        x = unrolled(m, noisy, w, checkpoint=checkpoint)
        torch.mean((x - clean) ** 2).backward()
        xs.append(x.detach())
        grads.append(w.grad)
    assert torch.equal(xs[0], xs[1])
    assert rel(grads[1], grads[0]) <= 1e-6
    assert float(grads[0].abs().max()) > 0


def test_params_check_layout_and_precision(monkeypatch):
    from pipeline.methods.dlw import DLW
    from pipeline.methods.dlw.params import DLWParams
    from pipeline.schema import ConfigError

    for bad in ({"layout": "nhwc"}, {"precision": "fp16"}):
        with pytest.raises(ConfigError, match=r"train\.dlw"):
            DLWParams(**bad).check("train.dlw")
    p = DLWParams(
        layout="conv3d_cl", precision="bf16", checkpoint_unrolled=True, source_sets=[["tv"]]
    )
    captured = {}
    monkeypatch.setattr(
        "pipeline.methods.dlw.trainer.Trainer", lambda spec, *a: captured.setdefault("spec", spec)
    )
    monkeypatch.setattr(DLW, "_validation", lambda self, context: None)
    monkeypatch.setattr("pipeline.train.data.load_tiles", lambda *a: {})
    config = {"variant": "tv", "seed_index": 0, **p.constants(), **DLW(p).trial_config()}
    DLW(p).trainer(config, {"seed": 0, "data_dir": ".", "device": "cpu"})
    spec = captured["spec"]
    assert (spec.layout, spec.precision, spec.checkpoint_unrolled) == ("conv3d_cl", "bf16", True)
    assert init_net(spec).resolved(torch.device("cpu")) == ("conv3d_cl", "bf16")
