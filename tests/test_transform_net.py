"""TransformerNet: architecture (against a functional re-implementation), sizes, ranges, inference, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nstlib import checkpoints
from nstlib.checkpoints import CheckpointError, load_transform_net, save_transform_net
from nstlib.fast import stylize_image, stylize_images
from nstlib.transform_net import TransformerNet, UpsampleConvLayer, count_parameters, pad_to_multiple


def perturbed(net: TransformerNet, seed: int = 0) -> TransformerNet:
    """Add noise to every parameter (instance-norm scales start at 1 and shifts at 0: too special)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def make_net(seed: int = 0, **kwargs) -> TransformerNet:
    torch.manual_seed(seed)
    return perturbed(TransformerNet(**kwargs), seed)




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


# ---- inference ----------------------------------------------------------------------------------------------

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


# ---- checkpoints --------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    net = make_net(8, upsample="transpose", base=8, output="tanh", pixel_scale=2.0)
    path = save_transform_net(net, tmp_path / "sub" / "model.pth", style="wave", steps=10, weights=[1.0, 2.5],
                              extra={"lr": 1e-3, "note": None})
    assert path == tmp_path / "sub" / "model.pth"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "nstlib.transform_net" and raw["version"] == 1
    assert raw["config"] == net.config
    assert raw["metadata"] == {"style": "wave", "steps": 10, "weights": [1.0, 2.5], "extra": {"lr": 1e-3, "note": None}}
    loaded = load_transform_net(path)
    assert loaded.config == net.config and not loaded.training
    assert loaded.metadata["style"] == "wave"
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth"]  # no temporary file left


def test_save_refuses_non_plain_metadata_and_keeps_old_file(tmp_path, monkeypatch):
    net = TransformerNet(base=4)
    path = save_transform_net(net, tmp_path / "m.pth")
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"metadata\['where'\].*str\(\)"):
        save_transform_net(net, path, where=Path("/x"))
    with pytest.raises(TypeError, match="TransformerNet"):
        save_transform_net(nn.Linear(2, 2), tmp_path / "lin.pth")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_transform_net(net, path, note="new")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]


def test_load_training_checkpoint_with_model_key(tmp_path):
    net = make_net(9, base=8)
    state = {"module." + k: v for k, v in net.state_dict().items()}  # DataParallel prefix is removed
    checkpoint = {"config": net.config, "model": state, "optimizer": {"state": {}, "param_groups": []},
                  "rng": torch.get_rng_state(), "step": 12, "metadata": {"style": "candy"}}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    loaded = load_transform_net(tmp_path / "ckpt.pt")
    assert loaded.metadata == {"style": "candy"}
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def _good_file(tmp_path) -> Path:
    return save_transform_net(TransformerNet(base=4), tmp_path / "good.pth")


def test_load_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_transform_net(tmp_path / "nope.pth")
    folder = tmp_path / "run"
    folder.mkdir()
    save_transform_net(TransformerNet(base=4), folder / "last.pt")
    with pytest.raises(CheckpointError, match=r"is a folder.*last\.pt"):
        load_transform_net(folder)


def test_load_not_torch_and_truncated(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a model")
    with pytest.raises(CheckpointError, match=r"notes\.pth is not a readable PyTorch file.*expected"):
        load_transform_net(text)
    good = _good_file(tmp_path).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth.*truncated"):
        load_transform_net(cut)


def test_load_pickled_module_is_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_transform_net(tmp_path / "module.pth")


def test_load_other_model_and_missing_keys(tmp_path):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pth")
    with pytest.raises(CheckpointError, match=r"linear\.pth holds a dict with keys bias, weight; expected"):
        load_transform_net(tmp_path / "linear.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    del raw["state_dict"]["final.conv.bias"]
    raw["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing keys: final\.conv\.bias.*unexpected keys: extra\.weight"):
        load_transform_net(tmp_path / "broken.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    raw["config"]["upsample"] = "transpose"  # same names, transposed weight shapes
    torch.save(raw, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape\.pth: tensor shapes do not match"):
        load_transform_net(tmp_path / "shape.pth")


def test_load_bare_state_dict_and_bad_headers(tmp_path):
    torch.save(TransformerNet(base=4).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="without its config"):
        load_transform_net(tmp_path / "bare.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    torch.save({**raw, "version": 99}, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="version 99"):
        load_transform_net(tmp_path / "future.pth")
    torch.save({**raw, "format": "other"}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="format 'other'"):
        load_transform_net(tmp_path / "other.pth")
    torch.save({**raw, "config": {**raw["config"], "depth": 3}}, tmp_path / "cfg.pth")
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_transform_net(tmp_path / "cfg.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_transform_net(tmp_path / "list.pth")
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
