"""Fast stylisation: a trained network applied to photos (clamped, batched, mode restored).

Oracles: the network called by hand (``net.eval()(x).clamp(0, 1)``), stylising one image at a
time, and networks whose output is known exactly (the identity, a doubling).
"""

from __future__ import annotations

import pytest
import torch
from nets import make_net
from torch import nn

from nstlib.fast import stylize_image, stylize_images
from nstlib.transform_net import TransformerNet


class Doubling(nn.Module):
    """``2 x``: its stylised image is ``clamp(2 x, 0, 1)``, computable by hand; it has one parameter
    (unused) so the device and dtype are read from it like from a TransformerNet."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 2 * x


# ---- a TransformerNet: the network called by hand, one image at a time -----------------------------------

def test_stylize_image_is_clamped_net_output_on_cpu():
    net = make_net(5, base=8).train()
    x = torch.rand(3, 20, 24)
    out = stylize_image(net, x)
    with torch.no_grad():
        want = net.eval()(x[None]).clamp(0, 1)
    net.train()
    out2 = stylize_image(net, x[None])
    assert out.shape == (1, 3, 20, 24) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert not out.requires_grad
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(out2, want)
    assert net.training  # training mode restored


def test_stylize_image_rejects_bad_input():
    net = TransformerNet(base=4)
    with pytest.raises(ValueError, match="255"):
        stylize_image(net, torch.rand(1, 3, 20, 20) * 255)
    with pytest.raises(ValueError, match="stylize_images"):
        stylize_image(net, torch.rand(2, 3, 20, 20))
    with pytest.raises(ValueError, match="uint8"):
        stylize_image(net, torch.zeros(1, 3, 20, 20, dtype=torch.uint8))
    with pytest.raises(TypeError, match="tensor"):
        stylize_image(net, [[0.5]])


def test_stylize_image_low_precision_and_channels_last_match_float32():
    net = make_net(6, base=8)
    x = torch.rand(1, 3, 24, 24)
    want = stylize_image(net, x)
    torch.testing.assert_close(stylize_image(net, x, channels_last=True), want, atol=1e-4, rtol=1e-4)
    low = stylize_image(net, x, dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    # bfloat16 keeps ~3 significant digits; this noisy random net amplifies rounding, so compare on average
    assert float((low - want).abs().mean()) < 0.02 < float(want.std())


def test_stylize_images_equals_one_at_a_time():
    net = make_net(7, base=8)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 20, 24, generator=g), torch.rand(1, 3, 32, 16, generator=g),
              torch.rand(3, 20, 24, generator=g), torch.rand(3, 20, 24, generator=g)]
    singles = [stylize_image(net, im) for im in images]
    for batch_size in (1, 2, 8):
        outs = stylize_images(net, images, batch_size=batch_size)
        assert isinstance(outs, list) and len(outs) == 4
        for got, want in zip(outs, singles):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    batch = torch.cat([im.view(1, 3, 20, 24) for im in (images[0], images[2], images[3])])
    out = stylize_images(net, batch, batch_size=2)
    assert isinstance(out, torch.Tensor) and out.shape == batch.shape
    torch.testing.assert_close(out, torch.cat([singles[0], singles[2], singles[3]]), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        stylize_images(net, images, batch_size=0)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        stylize_images(net, [images[0], images[1] * 255])




# ---- networks with known outputs ---------------------------------------------------------------------------

def test_identity_network_returns_the_image_and_doubling_is_clamped():
    x = torch.tensor([[[[0.0, 0.2], [0.5, 1.0]]]]).expand(1, 3, 2, 2).contiguous()
    torch.testing.assert_close(stylize_image(nn.Identity(), x), x)  # no parameters: runs on the CPU
    # 2x: 0 -> 0, 0.2 -> 0.4, 0.5 -> 1.0, 1.0 -> 2.0 clamped to 1.0
    want = torch.tensor([[[[0.0, 0.4], [1.0, 1.0]]]]).expand(1, 3, 2, 2)
    torch.testing.assert_close(stylize_image(Doubling(), x[0]), want)


def test_values_just_outside_unit_range_are_accepted_and_clamped():
    # rounding (for example after a resize) leaves values a hair outside [0, 1]: tolerated up to 1e-3
    x = torch.full((1, 3, 2, 2), 0.5)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = -5e-4, 1 + 5e-4
    out = stylize_image(nn.Identity(), x)
    assert out[0, 0, 0, 0].item() == 0.0 and out[0, 0, 0, 1].item() == 1.0
    x[0, 0, 0, 0] = -2e-3
    with pytest.raises(ValueError, match=r"values in \[-0\.002, "):
        stylize_image(nn.Identity(), x)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="expected \\[0, 1\\]"):
        stylize_image(nn.Identity(), x)


def test_stylize_images_keeps_order_across_size_groups():
    # sizes alternate, so images are grouped out of order; each result must land at its own index
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 4 + 2 * (i % 2), 6, generator=g) for i in range(5)]
    outs = stylize_images(Doubling(), images, batch_size=2)
    for image, out in zip(images, outs):
        torch.testing.assert_close(out, (2 * image).clamp(0, 1)[None])


def test_stylize_images_of_an_empty_batch_and_of_a_generator():
    empty = torch.zeros(0, 3, 5, 7)
    out = stylize_images(nn.Identity(), empty)
    assert out.shape == (0, 3, 5, 7)
    images = (torch.full((3, 2, 2), v) for v in (0.25, 0.75))
    assert [float(o.mean()) for o in stylize_images(Doubling(), images)] == [0.5, 1.0]


def test_stylize_images_rejects_what_is_not_images():
    with pytest.raises(TypeError, match="list of image tensors"):
        stylize_images(nn.Identity(), "photo.jpg")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        stylize_images(nn.Identity(), torch.rand(3, 4, 4))
    for bad in (True, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            stylize_images(nn.Identity(), [torch.rand(3, 4, 4)], batch_size=bad)
    with pytest.raises(TypeError, match="nn.Module"):
        stylize_image(lambda x: x, torch.rand(3, 4, 4))


def test_training_mode_is_restored_after_an_error():
    class Failing(TransformerNet):
        def forward(self, x):
            raise RuntimeError("out of memory")

    net = Failing(base=4).train()
    with pytest.raises(RuntimeError, match="out of memory"):
        stylize_image(net, torch.rand(1, 3, 16, 16))
    assert net.training
    net.eval()
    with pytest.raises(RuntimeError, match="out of memory"):
        stylize_images(net, [torch.rand(3, 16, 16)])
    assert not net.training
