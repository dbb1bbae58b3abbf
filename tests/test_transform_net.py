"""TransformerNet: architecture (against a functional re-implementation), sizes, ranges.

Running a network on photos is tests/test_fast.py; saving and loading it, tests/test_checkpoints.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import make_net
from torch import nn

from nstlib.transform_net import (
    ConditionalInstanceNorm2d,
    TransformerNet,
    UpsampleConvLayer,
    count_parameters,
    pad_to_multiple,
)


# ---- an independent oracle: the architecture written with torch.nn.functional ----------------------------

def _inorm(x, norm):
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def _conv(layer, x, stride=1):
    k = layer.conv.weight.shape[-1]
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    return F.conv2d(x, layer.conv.weight, layer.conv.bias, stride=stride)


def reference_forward(net: TransformerNet, x: torch.Tensor) -> torch.Tensor:
    """Johnson et al. with instance norm, by hand: what TransformerNet.forward must compute."""
    h, w = x.shape[-2:]
    y = F.pad(x * net.pixel_scale, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
    for layer, stride in zip(net.down, (1, 2, 2)):
        y = F.relu(_inorm(_conv(layer, y, stride), layer.norm))
    for block in net.res:
        r = F.relu(_inorm(_conv(block.conv1, y), block.conv1.norm))
        y = y + _inorm(_conv(block.conv2, r), block.conv2.norm)
    for layer in net.up:
        if net.upsample == "nearest":
            y = y.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
            y = _conv(layer, y)
        else:
            y = F.conv_transpose2d(y, layer.conv.weight, layer.conv.bias, stride=2, padding=1, output_padding=1)
        y = F.relu(_inorm(y, layer.norm))
    y = _conv(net.final, y)[..., :h, :w] / net.pixel_scale
    return (torch.tanh(y) + 1) / 2 if net.output == "tanh" else y


def hand_count(b: int) -> int:
    """Parameters of TransformerNet(base=b), summed layer by layer."""
    def conv(cin, cout, k):
        return cin * cout * k * k + cout

    def norm(c):
        return 2 * c

    down = conv(3, b, 9) + norm(b) + conv(b, 2 * b, 3) + norm(2 * b) + conv(2 * b, 4 * b, 3) + norm(4 * b)
    res = 5 * 2 * (conv(4 * b, 4 * b, 3) + norm(4 * b))
    up = conv(4 * b, 2 * b, 3) + norm(2 * b) + conv(2 * b, b, 3) + norm(b)
    return down + res + up + conv(b, 3, 9)


# ---- architecture ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_parameter_count_default_width(upsample):
    assert count_parameters(TransformerNet(upsample=upsample)) == 1_679_235
    assert hand_count(32) == 1_679_235


@pytest.mark.parametrize("base", [1, 4, 8, 16])
@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_parameter_count_matches_hand_formula(base, upsample):
    assert count_parameters(TransformerNet(upsample=upsample, base=base)) == hand_count(base)


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
@pytest.mark.parametrize("size", [(32, 48), (17, 23), (30, 45)])
def test_forward_matches_functional_reference(upsample, size):
    net = make_net(1, upsample=upsample, base=8)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got, want = net(x), reference_forward(net, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
@pytest.mark.parametrize("size", [(16, 16), (16, 37), (19, 18), (33, 64)])
def test_output_has_input_size(upsample, size):
    net = TransformerNet(upsample=upsample, base=4).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_too_small_or_wrong_shape_is_refused():
    net = TransformerNet(base=4)
    with pytest.raises(ValueError, match="at least 16x16"):
        net(torch.rand(1, 3, 15, 40))
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        net(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        net(torch.rand(1, 4, 32, 32))


def test_pad_to_multiple_reflects_right_and_bottom():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 8)
    assert y[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]  # reflection, not repetition
    torch.testing.assert_close(y[..., :3, :5], x)
    assert pad_to_multiple(torch.rand(1, 3, 8, 12)).shape == (1, 3, 8, 12)


def test_transposed_upsampling_doubles_odd_sizes():
    layer = UpsampleConvLayer(4, 2, "transpose")
    assert layer(torch.rand(1, 4, 5, 7)).shape == (1, 2, 10, 14)
    with pytest.raises(ValueError, match="mode"):
        UpsampleConvLayer(4, 2, "bilinear")


def test_tanh_output_is_squashed_linear_output():
    net = make_net(3, base=8, output="tanh")
    linear = TransformerNet(base=8, output="none")
    linear.load_state_dict(net.state_dict())  # tanh has no parameters: same weights
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        y, z = net(x), linear.eval()(x)
    torch.testing.assert_close(y, (torch.tanh(z) + 1) / 2)
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_pixel_scale_is_net_on_scaled_input_divided_back():
    net = make_net(4, base=8)
    scaled = TransformerNet(base=8, pixel_scale=255)
    scaled.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(scaled.eval()(x), net(x * 255) / 255, atol=1e-5, rtol=1e-5)
    for bad in (0, -1, float("nan"), True, "255"):
        with pytest.raises(ValueError, match="pixel_scale"):
            TransformerNet(pixel_scale=bad)


def test_config_rebuilds_the_net():
    net = TransformerNet(upsample="transpose", base=8, output="tanh", pixel_scale=255)
    assert net.config == {"upsample": "transpose", "base": 8, "output": "tanh", "pixel_scale": 255.0}
    clone = TransformerNet(**net.config)
    assert clone.config == net.config
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    net.pixel_scale = 1
    assert net.config["pixel_scale"] == 1.0
    with pytest.raises(ValueError, match="upsample"):
        TransformerNet(upsample="bilinear")
    with pytest.raises(ValueError, match="output"):
        TransformerNet(output="sigmoid")
    with pytest.raises(ValueError, match="base"):
        TransformerNet(base=0)


def test_layers_use_reflection_padding_and_instance_norm():
    net = TransformerNet(base=4)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    pads = [m for m in net.modules() if isinstance(m, nn.ReflectionPad2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(convs) == len(pads) == 3 + 10 + 2 + 1
    assert len(norms) == 3 + 10 + 2 and all(n.affine and not n.track_running_stats for n in norms)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ZeroPad2d)) for m in net.modules())


# ---- many styles: conditional instance normalisation (Dumoulin et al. 2017) ------------------------------------

def mixed_one_style(net: TransformerNet, w) -> TransformerNet:
    """The second formula: a one-style net whose norms hold sum_s w_s gamma_s and sum_s w_s beta_s (summed by hand)."""
    single = TransformerNet(upsample=net.upsample, base=net.base, output=net.output, pixel_scale=net.pixel_scale)
    state = {}
    for name, value in net.state_dict().items():
        if name.endswith(".norm.gamma"):
            state[name[:-len("gamma")] + "weight"] = sum(float(w[s]) * value[s] for s in range(len(w)))
        elif name.endswith(".norm.beta"):
            state[name[:-len("beta")] + "bias"] = sum(float(w[s]) * value[s] for s in range(len(w)))
        else:
            state[name] = value
    single.load_state_dict(state)
    return single.eval()


def test_one_style_network_keeps_pytorch_examples_names_and_refuses_a_style():
    from nstlib.checkpoints import examples_key_map

    net = TransformerNet(num_styles=None)
    expected = {f"{module}.{p}" for module in examples_key_map().values() for p in ("weight", "bias")}
    assert set(net.state_dict()) == expected == set(TransformerNet().state_dict())
    assert "num_styles" not in net.config
    with pytest.raises(ValueError, match="num_styles=N"):
        net(torch.rand(1, 3, 16, 16), style=0)


def test_multistyle_norms_hold_one_scale_and_shift_row_per_style():
    net = TransformerNet(base=4, num_styles=3)
    norms = [m for m in net.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    assert len(norms) == 3 + 10 + 2
    assert not any(isinstance(m, nn.InstanceNorm2d) and m.affine for m in net.modules())
    assert [tuple(n.gamma.shape) for n in norms[:3]] == [(3, 4), (3, 8), (3, 16)]
    assert all(torch.equal(n.gamma, torch.ones_like(n.gamma)) and not n.beta.any() for n in norms)
    # the same names as the one-style net, with the norms' weight/bias renamed gamma/beta
    one = {k.replace("norm.weight", "norm.gamma").replace("norm.bias", "norm.beta") for k in TransformerNet(base=4).state_dict()}
    assert set(net.state_dict()) == one
    assert net.config["num_styles"] == 3 and TransformerNet(**net.config).config == net.config
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_styles"):
            TransformerNet(num_styles=bad)


@pytest.mark.parametrize("base", [4, 32])
@pytest.mark.parametrize("num_styles", [1, 2, 5])
def test_multistyle_parameter_count_by_hand(base, num_styles):
    # each extra style adds a scale and a shift per normalised channel:
    # 2 * (b + 2b + 4b  +  5 * 2 * 4b  +  2b + b) = 2 * 50 b
    extra = 2 * (base + 2 * base + 4 * base + 5 * 2 * 4 * base + 2 * base + base)
    assert extra == 100 * base
    assert count_parameters(TransformerNet(base=base, num_styles=num_styles)) == hand_count(base) + (num_styles - 1) * extra


def test_style_index_equals_its_one_hot_vector_and_default_is_style_0():
    net = make_net(5, base=8, num_styles=3)
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for s in range(3):
            one_hot = [1.0 if k == s else 0.0 for k in range(3)]
            assert torch.equal(net(x, style=s), net(x, style=one_hot))
            assert torch.equal(net(x, style=s), net(x, style=torch.tensor(one_hot)))
        assert torch.equal(net(x), net(x, style=0))
        assert not torch.allclose(net(x, style=0), net(x, style=1))


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_blend_equals_a_one_style_net_holding_the_mixed_scales_and_shifts(upsample):
    net = make_net(6, base=8, num_styles=3, upsample=upsample)
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(6))
    for w in ([0.25, 0.75, 0.0], [0.2, 0.3, 0.5], [1.5, -0.5, 0.0]):
        with torch.no_grad():
            got = net(x, style=w)
            want = reference_forward(mixed_one_style(net, w), x)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_per_image_styles_equal_one_image_at_a_time():
    net = make_net(7, base=8, num_styles=3)
    x = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(7))
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.3, 0.7], [0.5, 0.5, 0.0]])
    with torch.no_grad():
        batch = net(x, style=weights)
        alone = torch.cat([net(x[i:i + 1], style=weights[i]) for i in range(3)])
    torch.testing.assert_close(batch, alone, atol=1e-4, rtol=1e-4)  # float rounding only


def test_bad_styles_are_refused_naming_the_fix():
    net = TransformerNet(base=4, num_styles=2)
    x = torch.rand(2, 3, 16, 16)
    for style, match in ((2, r"0 \.\. 1"), (-1, r"0 \.\. 1"), ([1.0, 0.0, 0.0], r"shape \(3,\)"),
                         (torch.ones(3, 2), r"\[2, 2\] tensor"), ([float("nan"), 1.0], "finite"),
                         ("style", "index")):
        with pytest.raises(ValueError, match=match):
            net(x, style=style)
