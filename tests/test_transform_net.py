"""TransformerNet: architecture (against a functional re-implementation), sizes, ranges.

Running a network on photos is tests/test_fast.py; saving and loading it, tests/test_checkpoints.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import make_net
from torch import nn

from nstlib.transform_net import TransformerNet, UpsampleConvLayer, count_parameters, pad_to_multiple


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
