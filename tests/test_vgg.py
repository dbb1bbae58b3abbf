"""VGGFeatures against torchvision's VGG19, and the weights code paths (cache, failure, quick mode)."""

import pytest
import torch
from torchvision.models import VGG19_Weights, vgg19

import nstlib
from nstlib import layers, config, vgg
from nstlib.vgg import VGGFeatures


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(vgg, "_state_cache", {})
    monkeypatch.setattr(config, "_announced", False)
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)


def torchvision_reference(state, image, names):
    """Run torchvision's own vgg19().features with ``state`` and collect ``names`` by index."""
    tv = vgg19(weights=None).features.eval()
    tv.load_state_dict(state)
    mean = torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1)
    x = (image - mean) / std
    out = {}
    for i, module in enumerate(tv):
        x = module(x)
        if layers.VGG19_LAYERS[i] in names:
            out[layers.VGG19_LAYERS[i]] = x.clone()  # torchvision's ReLUs work in place: copy
    return out


def test_outputs_match_torchvision_with_the_same_weights():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 48, 40)
    names = ["conv1_1", "conv4_2", "relu2_1", "pool3"]
    model = VGGFeatures(names, weights=None)
    ours = model(image)
    assert list(ours) == names
    reference = torchvision_reference(vgg.load_vgg19_state(None), image, names)
    for name in names:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-4, atol=1e-5)


def test_conv_outputs_are_not_overwritten_by_relu():
    model = VGGFeatures(["conv1_1", "relu1_1"], weights=None)
    out = model(torch.rand(1, 3, 16, 16))
    assert (out["conv1_1"] < 0).any()
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_truncated_after_deepest_layer_and_accepts_tutorial_names():
    model = VGGFeatures(["conv_4", "conv_1"], weights=None)
    assert len(model.features) == layers.layer_index("conv2_2") + 1
    out = model(torch.rand(1, 3, 32, 32))
    assert set(out) == {"conv2_2", "conv1_1"}
    assert out["conv2_2"].shape == (1, 128, 16, 16)


def test_frozen_eval_and_gradient_reaches_the_image():
    model = VGGFeatures(["conv3_1"], weights=None).train()
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    model(image)["conv3_1"].pow(2).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = VGGFeatures(["conv1_1"], weights=None)
    vgg._state_cache.clear()
    b = VGGFeatures(["conv1_1"], weights=None)
    torch.testing.assert_close(torch.rand(3), expected_next)
    torch.testing.assert_close(a.features[0].weight, b.features[0].weight)
    # Kaiming normal, fan-out, ReLU gain: std = sqrt(2 / (out_channels * 3 * 3))
    std = vgg.load_vgg19_state(None)["21.weight"].std().item()
    assert std == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)


def test_average_pooling_option():
    model = VGGFeatures(["pool1"], weights=None, pooling="avg")
    assert isinstance(model.features[4], torch.nn.AvgPool2d)
    with pytest.raises(ValueError, match="pooling"):
        VGGFeatures(["pool1"], weights=None, pooling="min")


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        VGGFeatures(["conv9_9"], weights=None)
    with pytest.raises(ValueError, match="weights="):
        VGGFeatures(["conv1_1"], weights="imagenet21k")
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        VGGFeatures(["conv1_1"], weights=None)(torch.rand(3, 8, 8))


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    # A file placed by hand where torch hub caches VGG19_Weights.IMAGENET1K_V1 is used as is.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(7)
    fake = {f"features.{k}": torch.randn_like(v) * 0.05 for k, v in vgg.load_vgg19_state(None).items()}
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(fake, checkpoints / VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    image = torch.rand(1, 3, 32, 32)
    ours = VGGFeatures(["conv2_1"], weights="imagenet")(image)
    state = {k.removeprefix("features."): v for k, v in fake.items()}
    torch.testing.assert_close(ours["conv2_1"], torchvision_reference(state, image, ["conv2_1"])["conv2_1"])


def test_failed_download_explains_itself_and_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: fails at once
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(nstlib.WeightsError) as info:
        VGGFeatures(["conv1_1"], weights="imagenet", progress=False)
    message = str(info.value)
    assert "offline" in message and "proxy" in message
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "NSTLIB_QUICK=1" in message
    assert not any(tmp_path.rglob("*.pth"))


def test_quick_mode_uses_random_weights_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent")  # any download attempt would fail
    model = VGGFeatures(["conv1_1"], weights="imagenet")
    torch.testing.assert_close(model.features[0].weight, vgg.load_vgg19_state(None)["0.weight"])
    assert "QUICK MODE" in capsys.readouterr().out


def test_too_small_images_get_a_clear_error():
    model = VGGFeatures(["conv5_1"], weights=None)
    assert model(torch.rand(1, 3, 16, 20))["conv5_1"].shape[-2:] == (1, 1)
    with pytest.raises(ValueError, match="conv5_1 needs at least 16 px"):
        model(torch.rand(1, 3, 12, 16))
