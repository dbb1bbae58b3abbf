"""Fast stylisation: a trained network applied to photos (clamped, batched, mode restored).

Oracles: the network called by hand (``net.eval()(x).clamp(0, 1)``), stylising one image at a
time, and networks whose output is known exactly (the identity, a doubling). The CPU backends
(ONNX Runtime, bfloat16) are checked against float32 PyTorch (PSNR), ``"auto"`` against the
backend it must pick, and the cache against the network's output after its weights change.
"""

from __future__ import annotations

import sys

import pytest
import torch
from nets import make_net
from torch import nn

import nstlib.export
import nstlib.fast as fast
from nstlib.export import psnr
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


# ---- CPU backends: ONNX Runtime and bfloat16 against float32 PyTorch ---------------------------------------

LARGE = (1, 3, 256, 260)  # at least AUTO_MIN_PIXELS: "auto" may take a fast path


def calibrated_net(seed: int, **kwargs) -> TransformerNet:
    """A noisy net whose last layer is rescaled so its output on a photo-like input spans [0, 1] like a
    trained network's (mean 0.5, std 0.25 per channel) instead of -6..6 (where nearly every pixel clamps)."""
    net = make_net(seed, **kwargs)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x)
        mean, std = y.mean((0, 2, 3)), y.std((0, 2, 3))
        net.final.conv.weight.mul_((0.25 / std)[:, None, None, None])
        net.final.conv.bias.sub_(mean).mul_(0.25 / std).add_(0.5)
    return net


@pytest.mark.parametrize("backend", ["onnx", "float32"])
def test_float32_backends_equal_pytorch_up_to_rounding(backend):
    net = make_net(8, base=8).train()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 50, 37, generator=g)
    want = stylize_image(net, x, backend="torch")
    got = stylize_image(net, x, backend=backend)
    assert got.shape == want.shape and got.dtype == torch.float32 and net.training
    assert got.is_contiguous() and psnr(got, want) > 60 and float((got - want).abs().max()) < 1e-3
    images = [torch.rand(3, 40, 44, generator=g), torch.rand(3, 24, 64, generator=g),
              torch.rand(3, 40, 44, generator=g)]  # "float32": a batch of two takes instance_norm, one image batch_norm
    for got, want in zip(stylize_images(net, images, batch_size=2, backend=backend),
                         stylize_images(net, images, batch_size=2, backend="torch")):
        assert psnr(got, want) > 60


def test_cpu_backends_take_the_style_of_a_multi_style_net(monkeypatch):
    net = calibrated_net(16, base=8, num_styles=3)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(*LARGE, generator=g)
    pair = torch.rand(2, 3, 40, 36, generator=g)
    for style in (2, [0.25, 0.0, 0.75]):
        want = stylize_image(net, x, backend="torch", style=style)
        assert psnr(stylize_image(net, x, backend="float32", style=style), want) > 60
        assert 35 < psnr(stylize_image(net, x, backend="bfloat16", style=style), want) < 80
    per_image = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5]])  # one blend per image
    got = stylize_images(net, pair, backend="float32", style=per_image)
    assert psnr(got, stylize_images(net, pair, backend="torch", style=per_image)) > 60
    assert psnr(got[1:], stylize_image(net, pair[1:], backend="torch", style=[0, 0.5, 0.5])) > 60
    monkeypatch.setattr(fast, "native_bfloat16", lambda *args: False)
    monkeypatch.setattr(fast, "AUTO_ORDER", ("onnx", "float32"))  # an order with ONNX Runtime first...
    assert fast.cpu_backend() == "onnx"
    auto = stylize_image(net, x, style=1)  # ... but the exported graph has style 0 only: the rewrite runs
    assert torch.equal(auto, stylize_image(net, x, backend="float32", style=1))


def test_bfloat16_backend_keeps_the_picture_of_a_trained_like_net():
    net = calibrated_net(9, base=8)
    x = torch.rand(*LARGE, generator=torch.Generator().manual_seed(3))
    want = stylize_image(net, x, backend="torch")
    got = stylize_image(net, x, backend="bfloat16")
    assert got.dtype == torch.float32 and next(net.parameters()).dtype == torch.float32  # the net is not cast
    assert 35 < psnr(got, want) < 80  # rounding to 8 significant bits: close, but not float32-exact


def test_auto_is_float32_for_small_images_and_the_cpu_backend_for_large_ones():
    net = make_net(10, base=8)
    small = torch.rand(1, 3, 40, 40)
    assert torch.equal(stylize_image(net, small), stylize_image(net, small, backend="torch"))
    large = torch.rand(*LARGE)
    chosen = fast.cpu_backend()
    assert chosen in fast.AUTO_ORDER
    assert torch.equal(stylize_image(net, large), stylize_image(net, large, backend=chosen))
    # PyTorch options and styles mean PyTorch
    assert torch.equal(stylize_image(net, large, channels_last=True),
                       stylize_image(net, large, backend="torch", channels_last=True))


def test_auto_runs_rewritten_float32_without_native_bfloat16(monkeypatch):
    monkeypatch.setattr(fast, "native_bfloat16", lambda *args: False)  # a CPU without native bfloat16
    net = make_net(11, base=8)
    x = torch.rand(*LARGE)
    assert fast.cpu_backend() == "float32"  # ONNX Runtime installed here, but the rewrite is faster
    assert fast.cpu_backend(style=True) == "float32"
    monkeypatch.setattr(fast, "AUTO_ORDER", ("onnx", "float32"))  # an order that would try ONNX Runtime first
    assert fast.cpu_backend() == "onnx"
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)  # the exporter's package missing: no ONNX path
        assert fast.cpu_backend() == "float32"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # now import onnxruntime fails: clean fallback
    assert fast.cpu_backend() == "float32"
    assert torch.equal(stylize_image(net, x), stylize_image(net, x, backend="float32"))
    assert torch.equal(stylize_images(net, x)[0:1], stylize_image(net, x, backend="float32"))
    assert psnr(stylize_image(net, x), stylize_image(net, x, backend="torch")) > 60
    with pytest.raises(ImportError, match="pip install onnxruntime onnx"):
        stylize_image(net, x, backend="onnx")


class HeightBranch(TransformerNet):
    """A TransformerNet whose forward branches on the height in Python: its ONNX trace is wrong."""

    def forward(self, x):
        y = super().forward(x)
        return y if x.shape[-2] % 2 == 0 else 1 - y


def test_auto_warns_and_runs_float32_when_the_fast_path_cannot_be_prepared(monkeypatch):
    monkeypatch.setattr(fast, "AUTO_ORDER", ("onnx",))
    net = HeightBranch(base=4)
    x = torch.rand(*LARGE)
    with pytest.warns(RuntimeWarning, match="'onnx' could not be prepared"):
        out = stylize_image(net, x)
    assert torch.equal(out, stylize_image(net, x, backend="torch"))
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        stylize_image(net, x, backend="onnx")


def test_fast_paths_are_prepared_once_and_rebuilt_when_the_weights_change(monkeypatch):
    exports = []
    real_export = nstlib.export.export_onnx
    monkeypatch.setattr(nstlib.export, "export_onnx", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    net = make_net(12, base=8)
    x = torch.rand(1, 3, 48, 52)
    first = stylize_image(net, x, backend="onnx")
    assert torch.equal(stylize_image(net, x, backend="onnx"), first) and len(exports) == 1  # session reused
    bf_first = stylize_image(net, x, backend="bfloat16")
    with torch.no_grad():
        net.final.conv.bias.add_(torch.tensor([0.3, -0.2, 0.1]))  # in place, as an optimiser step would
    want = stylize_image(net, x, backend="torch")
    second = stylize_image(net, x, backend="onnx")
    assert len(exports) == 2 and not torch.equal(second, first)
    assert psnr(second, want) > 60  # the new session computes the new network
    bf_second = stylize_image(net, x, backend="bfloat16")
    assert not torch.equal(bf_second, bf_first)
    assert float((bf_second - want).abs().mean()) < float((bf_first - want).abs().mean())
    net.load_state_dict(make_net(13, base=8).state_dict())  # replaced weights: rebuilt again
    assert psnr(stylize_image(net, x, backend="onnx"), stylize_image(net, x, backend="torch")) > 60
    assert len(exports) == 3


def test_backend_argument_is_checked():
    net = make_net(14, base=4)
    x = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match="backend='fast' must be one of"):
        stylize_image(net, x, backend="fast")
    with pytest.raises(ValueError, match="options of backend=\"torch\""):
        stylize_image(net, x, backend="onnx", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="runs style 0 of a multi-style network only"):
        stylize_images(net, [x], backend="onnx", style=0)
    with pytest.raises(ValueError, match="needs a multi-style network"):  # as net(x, style=0) says
        stylize_images(net, [x], backend="float32", style=0)
    with pytest.raises(ValueError, match="runs on the CPU"):
        fast._choose("onnx", torch.device("cuda"), pixels=10**6, torch_options=False, style=None)
    assert fast._choose("auto", torch.device("cuda"), pixels=10**6, torch_options=False, style=None) == "torch"


def test_native_bfloat16_reads_the_cpu_flags(tmp_path):
    def cpuinfo(flags: str):
        path = tmp_path / f"cpuinfo-{len(list(tmp_path.iterdir()))}"
        path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nflags\t\t: {flags}\n")
        return path

    assert fast.native_bfloat16(cpuinfo("fpu avx2 avx512f avx512_bf16 avx512_vnni"))
    assert fast.native_bfloat16(cpuinfo("fpu avx2 amx_bf16 amx_tile"))
    assert not fast.native_bfloat16(cpuinfo("fpu avx2 avx512f avx512bw avx512_vnni"))  # AVX-512 alone: emulated
    assert not fast.native_bfloat16(tmp_path / "missing")
