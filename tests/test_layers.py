"""The layer table against torchvision's own module list, and the PyTorch tutorial's naming loop."""

import copy

import pytest
import torch
from torch import nn
from torchvision.models import vgg19

import nstlib
from nstlib import layers


@pytest.fixture(scope="module")
def tv_features():
    return vgg19(weights=None).features


def test_37_names_match_torchvision_module_types(tv_features):
    assert len(layers.VGG19_LAYERS) == len(tv_features) == 37
    expected_type = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, module in zip(layers.VGG19_LAYERS, tv_features):
        kind = name.rstrip("0123456789_")
        assert isinstance(module, expected_type[kind]), name


def test_channels_match_torchvision(tv_features):
    channels = 3
    for name, module in zip(layers.VGG19_LAYERS, tv_features):
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        assert layers.LAYER_CHANNELS[name] == channels, name


def test_tutorial_names_follow_the_tutorials_loop(tv_features):
    # The PyTorch neural-style tutorial names layers with this loop (conv count i, pools take i).
    i = 0
    tutorial = []
    for module in tv_features.children():
        if isinstance(module, nn.Conv2d):
            i += 1
            tutorial.append(f"conv_{i}")
        elif isinstance(module, nn.ReLU):
            tutorial.append(f"relu_{i}")
        elif isinstance(module, nn.MaxPool2d):
            tutorial.append(f"pool_{i}")
    assert {t: g for t, g in zip(tutorial, layers.VGG19_LAYERS)} == layers.TUTORIAL_NAMES


def test_the_confusing_pair_is_resolved():
    assert nstlib.resolve_layer("conv_4") == "conv2_2"
    assert nstlib.resolve_layer("conv4_2") == "conv4_2"
    assert layers.tutorial_name("conv4_2") == "conv_10"
    assert layers.layer_index("conv_4") == 7


def test_seed_presets_resolve_to_expected_layers():
    assert layers.resolve_layers(layers.SEED_STYLE_LAYERS) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    assert layers.resolve_layers(layers.SEED_CONTENT_LAYERS) == ["conv2_2"]
    for index, name in layers.SEED_VGG_OUTPUTS.items():
        assert layers.VGG19_LAYERS[index] == name


@pytest.mark.parametrize("bad", ["conv4", "conv_17", "relu6_1", "", "pool_3"])
def test_unknown_layer_names_raise_clear_errors(bad):
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        nstlib.resolve_layer(bad)


def test_resolve_layers_names_the_argument_and_refuses_empty():
    with pytest.raises(ValueError, match="style_layers"):
        layers.resolve_layers(["conv1_1", "nope"], "style_layers")
    with pytest.raises(ValueError, match="style_layers is empty"):
        layers.resolve_layers([], "style_layers")
    assert layers.resolve_layers(["conv_1", "conv1_1", "relu_1"]) == ["conv1_1", "relu1_1"]


@pytest.mark.parametrize("name", ["conv1_1", "conv1_2", "pool1", "conv2_1", "conv3_2", "pool3"])
def test_receptive_field_matches_gradient_support(name, tv_features):
    # Oracle: the input pixels that influence one output unit, found by back-propagation through a
    # network with positive weights (so no gradient cancels) and identity-like activations.
    index = layers.layer_index(name)
    # Average pooling has max pooling's geometry but passes gradient to the whole window.
    net = nn.Sequential(
        *[nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else copy.deepcopy(m) for m in tv_features[: index + 1]]
    )
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 0.01)
            nn.init.constant_(m.bias, 1.0)
    net = net.double()
    x = torch.ones(1, 3, 128, 128, dtype=torch.double, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = x.grad[0].abs().sum(0).sum(1).nonzero()
    assert rows.max().item() - rows.min().item() + 1 == layers.receptive_field(name)


def test_downsampling_matches_feature_map_size(tv_features):
    x = torch.zeros(1, 3, 64, 64)
    for name, module in zip(layers.VGG19_LAYERS, tv_features):
        x = module(x)
        assert 64 // x.shape[-1] == layers.downsampling(name), name


def test_layer_table_has_both_names():
    table = layers.layer_table()
    assert [r["name"] for r in table] == list(layers.VGG19_LAYERS)
    text = layers.format_layer_table()
    assert "conv2_2  conv_4" in text
