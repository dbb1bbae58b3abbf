"""pytorch/examples' pretrained models: name conversion (against their own network), fetch end to end, quick mode."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
import torch
import torch.nn.functional as F
from localserver import Route

from nstlib.data import pretrained
from nstlib.checkpoints import convert_examples_state_dict, examples_key_map
from nstlib.data.pretrained import PRETRAINED_STYLES, fetch_pretrained, load_pretrained
from nstlib import TransformerNet, load_transform_net
from nstlib.vgg import WeightsError




# ---- pytorch/examples' fast_neural_style network, with its attribute names (the oracle) ---------------------

class ConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ExamplesTransformerNet(torch.nn.Module):
    """pytorch/examples' TransformerNet (width 32 there; ``b`` here to keep tests fast)."""

    def __init__(self, b=32):
        super().__init__()
        self.conv1 = ConvLayer(3, b, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(b, affine=True)
        self.conv2 = ConvLayer(b, 2 * b, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(2 * b, affine=True)
        self.conv3 = ConvLayer(2 * b, 4 * b, kernel_size=3, stride=2)
        self.in3 = torch.nn.InstanceNorm2d(4 * b, affine=True)
        self.res1 = ResidualBlock(4 * b)
        self.res2 = ResidualBlock(4 * b)
        self.res3 = ResidualBlock(4 * b)
        self.res4 = ResidualBlock(4 * b)
        self.res5 = ResidualBlock(4 * b)
        self.deconv1 = UpsampleConvLayer(4 * b, 2 * b, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(2 * b, affine=True)
        self.deconv2 = UpsampleConvLayer(2 * b, b, kernel_size=3, stride=1, upsample=2)
        self.in5 = torch.nn.InstanceNorm2d(b, affine=True)
        self.deconv3 = ConvLayer(b, 3, kernel_size=9, stride=1)
        self.relu = torch.nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def examples_model(seed: int, b: int = 32) -> ExamplesTransformerNet:
    torch.manual_seed(seed)
    net = ExamplesTransformerNet(b)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        # trained models output pixels around 0..255: scale the last layer like one
        net.deconv3.conv2d.weight.mul_(200)
        net.deconv3.conv2d.bias.add_(127.5)
    return net.eval()


def examples_state(net: ExamplesTransformerNet) -> dict:
    """Its state dict plus the stale running statistics old PyTorch versions saved for instance norms."""
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    return state


def oracle(net: ExamplesTransformerNet, x: torch.Tensor) -> torch.Tensor:
    """What our [0, 1] network must return: theirs on 0..255 pixels, divided by 255 (reflect-pad to 4, crop)."""
    h, w = x.shape[-2:]
    padded = F.pad(x * 255, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
    with torch.no_grad():
        return net(padded)[..., :h, :w] / 255


# ---- conversion ---------------------------------------------------------------------------------------------

def test_key_map_covers_our_network_exactly():
    names = examples_key_map()
    ours = set(TransformerNet(upsample="nearest", base=4).state_dict())
    assert {f"{v}.{p}" for v in names.values() for p in ("weight", "bias")} == ours
    theirs = set(ExamplesTransformerNet(4).state_dict())
    assert {f"{k}.{p}" for k in names for p in ("weight", "bias")} == theirs


def test_converted_net_equals_examples_net_on_scaled_input():
    ref = examples_model(0)
    state = examples_state(ref)
    assert "res3.in2.running_var" in state and "in5.running_mean" in state
    converted = convert_examples_state_dict(state)
    assert not any("running" in k for k in converted)
    net = TransformerNet(upsample="nearest", pixel_scale=255)
    net.load_state_dict(converted)
    net.eval()
    for size in [(32, 48), (21, 30)]:  # a multiple of 4 and not
        x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            got = net(x)
        want = oracle(ref, x)
        assert float(want.std()) > 0.05  # a real signal, not a constant
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_convert_lists_unexpected_and_missing_keys():
    state = examples_state(examples_model(1, 4))
    del state["deconv3.conv2d.bias"]
    state["fc.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected keys \['fc\.weight'\].*missing keys \['deconv3\.conv2d\.bias'\]"):
        convert_examples_state_dict(state)
    with pytest.raises(ValueError, match="state dict"):
        convert_examples_state_dict([1, 2])


@pytest.mark.parametrize("legacy", [False, True])
def test_load_transform_net_reads_examples_files(tmp_path, legacy):
    ref = examples_model(2, 8)
    path = tmp_path / "candy.pth"
    # the real files were written by PyTorch 0.x: the legacy (non-zip) format must load too
    torch.save(examples_state(ref), path, _use_new_zipfile_serialization=not legacy)
    net = load_transform_net(path)
    assert net.config == {"upsample": "nearest", "base": 8, "output": "none", "pixel_scale": 255.0}
    x = torch.rand(1, 3, 24, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(ref, x), atol=2e-4, rtol=1e-4)


# ---- fetch_pretrained end to end against a local server --------------------------------------------------

def make_archive(seed: int = 0, skip: str | None = None, b: int = 4, broken: str | None = None) -> tuple[bytes, dict]:
    """saved_models.zip as pytorch/examples ships it (in a folder, with macOS junk), and the reference nets."""
    refs, buffer = {}, io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("saved_models/", b"")
        for i, style in enumerate(PRETRAINED_STYLES):
            if style == skip:
                continue
            if style == broken:
                zf.writestr(f"saved_models/{style}.pth", b"not a model")
                continue
            refs[style] = examples_model(seed * 10 + i, b)
            data = io.BytesIO()
            torch.save(examples_state(refs[style]), data)
            zf.writestr(f"saved_models/{style}.pth", data.getvalue())
        zf.writestr("__MACOSX/saved_models/._candy.pth", b"resource fork junk")
    return buffer.getvalue(), refs


def cache_files(cache_dir) -> list[str]:
    root = cache_dir / "pretrained"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_fetch_end_to_end_records_sha_and_caches(http_server, cache_dir):
    data, refs = make_archive()
    url = http_server.add("/s/saved_models.zip", data)
    path = fetch_pretrained("mosaic", url=url, progress=False)
    assert path == cache_dir / "pretrained" / "saved_models" / "mosaic.pth"
    assert cache_files(cache_dir) == ["saved_models", "saved_models.zip", "saved_models.zip.sha256.json",
                                      "saved_models/candy.pth", "saved_models/mosaic.pth",
                                      "saved_models/rain_princess.pth", "saved_models/udnie.pth"]
    record = json.loads((cache_dir / "pretrained" / "saved_models.zip.sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size"] == len(data)
    assert record["url"] == url
    assert http_server.count() == 1
    # second call: no network, and load_pretrained gives the right model for [0, 1] images
    assert fetch_pretrained("udnie", url=url, progress=False) == path.with_name("udnie.pth")
    for style in ("candy", "rain_princess"):
        net = load_pretrained(style, url=url)
        assert net.pixel_scale == 255 and not net.training
        x = torch.rand(1, 3, 20, 36)
        with torch.no_grad():
            torch.testing.assert_close(net(x), oracle(refs[style], x), atol=2e-4, rtol=1e-4)
    assert http_server.count() == 1


def test_changed_archive_is_refused_trust_on_first_use(http_server, cache_dir):
    data, _ = make_archive(seed=0)
    other, _ = make_archive(seed=1)
    url = http_server.add("/saved_models.zip", data, other)
    fetch_pretrained("candy", url=url, progress=False)
    root = cache_dir / "pretrained"
    record = (root / "saved_models.zip.sha256.json").read_text()
    # the cache is cleared except the record: the same archive again is accepted ...
    for p in sorted(root.rglob("*"), reverse=True):
        if p.name != "saved_models.zip.sha256.json":
            p.rmdir() if p.is_dir() else p.unlink()
    http_server.add("/saved_models.zip", data, other)
    fetch_pretrained("candy", url=url, progress=False)
    # ... a different one is refused, deleted, and the trusted models are not touched
    for p in sorted((root / "saved_models").iterdir()):
        p.unlink()
    (root / "saved_models").rmdir()
    (root / "saved_models.zip").unlink()
    with pytest.raises(WeightsError) as info:
        fetch_pretrained("candy", url=url, progress=False)
    message = str(info.value)
    assert hashlib.sha256(other).hexdigest() in message and hashlib.sha256(data).hexdigest() in message
    assert "saved_models.zip.sha256.json" in message and "delete" in message
    assert cache_files(cache_dir) == ["saved_models.zip.sha256.json"]
    assert (root / "saved_models.zip.sha256.json").read_text() == record


@pytest.mark.parametrize("problem", ["missing", "broken", "html", "not_zip"])
def test_bad_archive_fails_clearly_and_leaves_nothing(http_server, cache_dir, problem):
    if problem == "missing":
        url = http_server.add("/z.zip", make_archive(skip="udnie")[0])
        expected = r"lacks udnie\.pth"
    elif problem == "broken":
        url = http_server.add("/z.zip", make_archive(broken="mosaic")[0])
        expected = r"'saved_models/mosaic\.pth' is not a usable model"
    elif problem == "html":
        url = http_server.add("/z.zip", Route(body=b"<!DOCTYPE html><html>Dropbox sign in</html>",
                                              content_type="text/html"))
        expected = "HTML"
    else:
        url = http_server.add("/z.zip", b"PK but not really a zip file")
        expected = "not a zip archive"
    with pytest.raises(WeightsError, match=expected) as info:
        fetch_pretrained("candy", url=url, progress=False)
    assert "saved_models.zip" in str(info.value)  # says where a hand-made copy would go
    assert cache_files(cache_dir) == []  # no archive, no record, no half-extracted model, no temp folder


def test_archive_placed_by_hand_is_used_without_network(cache_dir, no_network):
    data, refs = make_archive(seed=3)
    (cache_dir / "pretrained").mkdir(parents=True)
    (cache_dir / "pretrained" / "saved_models.zip").write_bytes(data)
    net = load_pretrained("udnie")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(refs["udnie"], x), atol=2e-4, rtol=1e-4)


def test_unknown_style(cache_dir):
    for call in (fetch_pretrained, load_pretrained):
        with pytest.raises(ValueError, match="candy, mosaic, rain_princess, udnie"):
            call("starry_night")


# ---- quick mode ----------------------------------------------------------------------------------------------

def test_quick_mode_stand_in_is_seeded_and_offline(cache_dir, no_network, monkeypatch, capsys):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    state = torch.get_rng_state()
    net = load_pretrained("candy")
    again = load_pretrained("candy")
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    out = capsys.readouterr().out
    assert "QUICK MODE" in out and out.count("QUICK MODE") == 1 and "stand-in" in out
    assert isinstance(net, TransformerNet) and net.metadata["stand_in"] is True
    assert net.config == {"upsample": "nearest", "base": 32, "output": "none", "pixel_scale": 1.0}
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(pretrained.STAND_IN_SEED)
    fresh = TransformerNet(upsample="nearest")  # the documented recipe gives the same weights
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="quick mode"):
        fetch_pretrained("candy")


def test_quick_mode_uses_a_cached_model(http_server, cache_dir, monkeypatch, capsys):
    data, refs = make_archive(seed=4)
    fetch_pretrained("candy", url=http_server.add("/z.zip", data), progress=False)
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    net = load_pretrained("mosaic")
    assert "stand-in" not in capsys.readouterr().out and net.pixel_scale == 255
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(refs["mosaic"], x), atol=2e-4, rtol=1e-4)


def test_no_stand_in_outside_quick_mode(http_server, cache_dir):
    url = http_server.add("/gone.zip", Route(body=b"gone", status=404, content_type="text/plain"))
    with pytest.raises(WeightsError, match="404"):
        load_pretrained("candy", url=url)
    assert cache_files(cache_dir) == []
