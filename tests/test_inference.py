"""nstlib.inference: the CPU rewrite of TransformerNet computes the same function as the network.

Oracles: the network itself in float64 (the rewrite must agree to rounding, ~1e-13), PyTorch's own
``F.pad`` modes, and the layer definitions (nearest up-sampling + reflection pad + conv; a plain
9x9 convolution) for the two weight transforms.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nets import make_net
from nstlib.inference import (CPUInference, _interleave, reflect_pad, reflect_pad_blocks, replicate_pad,
                              space_to_depth_weight, subpixel_weight, subpixel_weight_2x2)
from nstlib.transform_net import TransformerNet

g = torch.Generator().manual_seed(0)


def rand(*shape, dtype=torch.float64):
    return torch.rand(*shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("pad", [1, 4])
@pytest.mark.parametrize("shape", [(1, 3, 9, 11), (2, 5, 6, 5)])
def test_pads_equal_pytorchs_and_are_channels_last(pad, shape):
    x = rand(*shape)
    got = reflect_pad(x, pad)
    assert torch.equal(got, F.pad(x, (pad,) * 4, mode="reflect"))
    assert got.is_contiguous(memory_format=torch.channels_last)
    got = replicate_pad(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(got, F.pad(x, (1,) * 4, mode="replicate"))
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("pad", [2, 4])
def test_reflect_pad_blocks_equals_padding_the_full_size_image(pad):
    blocks = rand(2, 12, 5, 7)  # 3 channels of a 10x14 image, each 2x2 block of pixels as 4 channels
    want = F.pixel_unshuffle(F.pad(F.pixel_shuffle(blocks, 2), (pad,) * 4, mode="reflect"), 2)
    got = reflect_pad_blocks(blocks, pad)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)


def test_subpixel_weight_equals_upsample_pad_conv():
    x, w = rand(2, 4, 7, 6), rand(5, 4, 3, 3) - 0.5
    want = F.conv2d(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1,) * 4, mode="reflect"), w)
    got = F.pixel_shuffle(F.conv2d(F.pad(x, (1,) * 4, mode="replicate"), subpixel_weight(w)), 2)
    assert got.shape == want.shape == (2, 5, 14, 12)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_subpixel_weight_2x2_keeps_only_the_taps_each_phase_reads():
    x, w = rand(2, 4, 7, 6), rand(5, 4, 3, 3) - 0.5
    want = F.conv2d(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1,) * 4, mode="reflect"), w)
    phases = F.conv2d(F.pad(x, (1,) * 4, mode="replicate"), subpixel_weight_2x2(w))
    assert subpixel_weight_2x2(w).shape == (20, 4, 2, 2) and phases.shape == (2, 20, 8, 7)
    torch.testing.assert_close(_interleave(phases, blocks=False), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(_interleave(phases, blocks=True), F.pixel_unshuffle(want, 2), rtol=0, atol=1e-12)
    # the 2x2 kernels are the non-zero corner of each phase's 3x3 kernel, nothing dropped
    full = subpixel_weight(w).view(5, 4, 4, 3, 3)
    torch.testing.assert_close(subpixel_weight_2x2(w).view(5, 4, 4, 2, 2).abs().sum((-1, -2)), full.abs().sum((-1, -2)))


def test_subpixel_weight_by_hand():
    # phase (0, 0): small row i - 1 gets original row 0, row i gets rows 1 and 2 (the same for columns)
    w = torch.arange(9, dtype=torch.float64).reshape(1, 1, 3, 3)  # rows [0 1 2], [3 4 5], [6 7 8]
    want = torch.tensor([[0.0, 1 + 2, 0], [3 + 6, 4 + 5 + 7 + 8, 0], [0, 0, 0]], dtype=torch.float64)
    assert torch.equal(subpixel_weight(w)[0, 0], want)
    # phase (1, 1): row i gets rows 0 and 1, row i + 1 gets row 2
    want = torch.tensor([[0.0, 0, 0], [0, 0 + 1 + 3 + 4, 2 + 5], [0, 6 + 7, 8]], dtype=torch.float64)
    assert torch.equal(subpixel_weight(w)[3, 0], want)


@pytest.mark.parametrize("k", [3, 9])
def test_space_to_depth_weight_equals_the_plain_convolution(k):
    x, w, bias = rand(1, 3, 10, 14), rand(2, 3, k, k) - 0.5, rand(2)
    padded = F.pad(x, (k // 2,) * 4, mode="reflect")
    want = F.conv2d(padded, w, bias)
    got = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(padded, 2), space_to_depth_weight(w),
                                   bias.repeat_interleave(4)), 2)
    assert space_to_depth_weight(w).shape == (8, 12, k // 2 + 1, k // 2 + 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_weight_transforms_reject_other_shapes():
    with pytest.raises(ValueError, match=r"\[out, in, 3, 3\]"):
        subpixel_weight(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match="odd k"):
        space_to_depth_weight(torch.zeros(2, 2, 4, 4))


@pytest.mark.parametrize("options", [{}, {"upsample": "transpose"}, {"output": "tanh"}, {"num_styles": 3},
                                     {"pixel_scale": 255.0}, {"base": 4}])
@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 64, 48)])
def test_cpu_inference_computes_the_network_in_float64(options, shape):
    net = make_net(1, **options).double()
    x = rand(*shape)
    with torch.no_grad():
        want = net(x)
        got = CPUInference(net, torch.float64)(x)
    assert got.shape == want.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * float(want.abs().max()))


def test_cpu_inference_in_bfloat16_rounds_like_bfloat16():
    net = make_net(2, base=8)
    x = rand(1, 3, 40, 44, dtype=torch.float32)
    with torch.no_grad():
        want = net(x)
        got = CPUInference(net)(x)
    assert got.dtype == torch.bfloat16
    error = float((got.float() - want).abs().mean() / want.abs().mean())
    assert 1e-4 < error < 0.05  # rounded (8 significant bits, many layers), but the same picture


def test_cpu_inference_copies_the_weights_once_and_rejects_other_networks():
    net = make_net(3, base=4).double()
    forward = CPUInference(net, torch.float64)
    x = rand(1, 3, 20, 20)
    with torch.no_grad():
        before = net(x)
        net.final.conv.bias.add_(1.0)
    torch.testing.assert_close(forward(x), before, rtol=0, atol=1e-9)  # the copy does not follow net
    with pytest.raises(TypeError, match="must be a TransformerNet"):
        CPUInference(torch.nn.Conv2d(3, 3, 1))
    assert isinstance(net, TransformerNet)


@pytest.mark.parametrize("style", [None, 2, [0.5, 0.25, 0.25], torch.tensor([[0.0, 1, 0], [0.3, 0.3, 0.4]])])
def test_cpu_inference_takes_a_style_like_the_network(style):
    net = make_net(4, num_styles=3).double()
    x = rand(2, 3, 36, 44)
    if isinstance(style, torch.Tensor):
        style = style.double()
    with torch.no_grad():
        want = net(x, style=style)
        got = CPUInference(net, torch.float64)(x, style)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * float(want.abs().max()))
    with pytest.raises(ValueError, match="needs a multi-style network"):
        CPUInference(make_net(5, base=4))(x, 0)
