"""PerceptualLoss against the module docstring's formula, computed a second time by hand.

The oracle takes the same :class:`VGGFeatures` (seeded random weights) and writes the sums out with
``einsum`` and means: Gram ``F F^T / (C H W)``, content ``mean (F - P)^2``, style
``sum_l w_l sum_ij (G_l - A_l)^2`` with ``A_l = sum_i b_i G_l(style_i)``, and total variation.
"""

import pytest
import torch

from nstlib.layers import LAYER_CHANNELS
from nstlib.perceptual import PerceptualLoss, blend_weights, default_layer_weights
from nstlib.vgg import VGGFeatures

CONTENT = ["relu2_2"]
STYLE = ["relu1_1", "relu2_1"]
SIZE = 24


@pytest.fixture(scope="module")
def extractor():
    return VGGFeatures(CONTENT + STYLE, weights=None)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return {name: torch.rand(1, 3, SIZE, SIZE, generator=g) for name in ("x", "content", "style_a", "style_b", "other")}


def gram(f):
    b, c, h, w = f.shape
    return torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w)


def by_hand(extractor, image, content, styles, blend, *, content_weight, style_weight, tv_weight, weights=None):
    """The docstring's total, from the features of the images (no nstlib loss function involved)."""
    weights = weights or {}
    fx, fc = extractor(image), extractor(content)
    fs = [extractor(s) for s in styles]
    content_term = sum(weights.get(n, 1.0) * ((fx[n] - fc[n]) ** 2).mean() for n in CONTENT)
    style_term = 0.0
    for n in STYLE:
        target = sum(b * gram(f[n]) for b, f in zip(blend, fs))
        style_term = style_term + weights.get(n, 1.0 / LAYER_CHANNELS[n] ** 2) * ((gram(fx[n]) - target) ** 2).sum()
    dy = image[:, :, 1:] - image[:, :, :-1]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    tv = (dy**2).mean() + (dx**2).mean() if tv_weight > 0 else torch.tensor(0.0)  # weight 0: not computed
    total = content_weight * content_term + style_weight * style_term + tv_weight * tv
    return {"total": total, "content": content_term, "style": style_term, "tv": tv}


def assert_losses(got, want):
    assert set(got) == {"total", "content", "style", "tv"}
    for key in got:
        torch.testing.assert_close(got[key], torch.as_tensor(want[key]), rtol=1e-5, atol=1e-9, msg=key)


def test_default_layer_weights_are_one_and_one_over_channels_squared():
    weights = default_layer_weights(["conv4_2"], ["conv1_1", "conv3_1", "conv5_1"])
    assert weights == {"content": {"conv4_2": 1.0}, "style": {"conv1_1": 1 / 4096, "conv3_1": 1 / 65536, "conv5_1": 1 / 262144}}


def test_one_style_matches_the_hand_computed_losses(extractor, images):
    loss = PerceptualLoss(CONTENT, STYLE, content_weight=2.0, style_weight=1e5, tv_weight=3.0, extractor=extractor)
    loss.set_content(images["content"])
    loss.set_style(images["style_a"])
    want = by_hand(extractor, images["x"], images["content"], [images["style_a"]], [1.0],
                   content_weight=2.0, style_weight=1e5, tv_weight=3.0)
    assert_losses(loss(images["x"]), want)
    assert float(want["style"]) > 0 and float(want["content"]) > 0  # not a comparison of zeros


@pytest.mark.parametrize("overrides", [{"relu2_2": 0.5, "relu_1": 2.0},  # tutorial name of relu1_1
                                       {"content": {"relu2_2": 0.5}, "style": {"relu1_1": 2.0}}])
def test_blended_styles_and_layer_weight_overrides(extractor, images, overrides):
    loss = PerceptualLoss(CONTENT, ["relu_1", "relu_3"], layer_weights=overrides, extractor=extractor)  # relu1_1, relu2_1
    loss.set_content(images["content"])
    loss.set_style([images["style_a"], images["style_b"]], blend=[3, 1])
    want = by_hand(extractor, images["x"], images["content"], [images["style_a"], images["style_b"]], [0.75, 0.25],
                   content_weight=1.0, style_weight=1e6, tv_weight=0.0, weights={"relu2_2": 0.5, "relu1_1": 2.0})
    assert_losses(loss(images["x"]), want)


def test_default_style_weights_give_the_mean_squared_gram_difference(extractor, images):
    # the PyTorch tutorial's convention: mse_loss(G, A) per layer, summed over the layers
    loss = PerceptualLoss(CONTENT, STYLE, extractor=extractor)
    loss.set_content(images["content"])
    loss.set_style(images["style_a"])
    fx, fs = extractor(images["x"]), extractor(images["style_a"])
    tutorial = sum(torch.nn.functional.mse_loss(gram(fx[n]), gram(fs[n])) for n in STYLE)
    torch.testing.assert_close(loss(images["x"])["style"], tutorial, rtol=1e-5, atol=0)


def test_content_targets_given_at_call_time_replace_the_stored_ones(extractor, images):
    # Johnson training: each batch brings its own content targets
    loss = PerceptualLoss(CONTENT, STYLE, extractor=extractor)
    loss.set_style(images["style_a"])
    loss.set_content(images["other"])
    stored = loss(images["x"])
    loss.set_content(images["content"])
    targets = {n: extractor(images["other"])[n] for n in CONTENT}
    assert_losses(loss(images["x"], content_targets=targets), stored)


def test_loss_of_the_content_image_itself_has_no_content_term(extractor, images):
    loss = PerceptualLoss(CONTENT, STYLE, extractor=extractor)
    loss.set_content(images["content"])
    loss.set_style(images["content"])
    out = loss(images["content"])
    assert out["content"].item() == 0.0 and out["style"].item() == 0.0 and out["total"].item() == 0.0


def test_gradient_reaches_the_image(extractor, images):
    loss = PerceptualLoss(CONTENT, STYLE, tv_weight=1.0, extractor=extractor)
    loss.set_content(images["content"])
    loss.set_style(images["style_a"])
    x = images["x"].clone().requires_grad_(True)
    loss(x)["total"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in extractor.parameters())  # the loss network stays frozen


def test_blend_weights():
    assert blend_weights(None, 4) == [0.25] * 4
    assert blend_weights([2, 2, 4], 3) == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="2 values for 3 style images"):
        blend_weights([1, 1], 3)
    with pytest.raises(ValueError, match="all be zero"):
        blend_weights([0, 0], 2)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        blend_weights([1, -1], 2)
    with pytest.raises(ValueError, match="style is empty"):
        blend_weights(None, 0)


def test_bad_arguments_name_themselves(extractor, images):
    with pytest.raises(RuntimeError, match="set the targets first"):
        PerceptualLoss(CONTENT, STYLE, extractor=extractor)(images["x"])
    with pytest.raises(ValueError, match=r"extractor computes .* but the loss needs"):
        PerceptualLoss(["conv4_2"], STYLE, extractor=extractor)
    for argument in ("content_weight", "style_weight", "tv_weight"):
        with pytest.raises(ValueError, match=f"{argument}=-1"):
            PerceptualLoss(CONTENT, STYLE, extractor=extractor, **{argument: -1})
    with pytest.raises(ValueError, match="not a content or style layer"):
        PerceptualLoss(CONTENT, STYLE, extractor=extractor, layer_weights={"conv5_1": 1.0})
    with pytest.raises(ValueError, match="not a style layer"):
        PerceptualLoss(CONTENT, STYLE, extractor=extractor, layer_weights={"style": {"relu2_2": 1.0}})
    with pytest.raises(ValueError, match="content_layers"):
        PerceptualLoss(["conv9_9"], STYLE, extractor=extractor)
