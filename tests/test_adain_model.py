"""AdaIN: the operation by hand and by its properties, the exact pytorch-AdaIN layout, stylize_adain, coral."""

from __future__ import annotations

import math

import pytest
import torch
from adain_nets import reference_decoder, reference_style_transfer, reference_vgg, seeded

from nstlib.adain_model import (
    DECODER_MODULES,
    ENCODER_LAYERS,
    ENCODER_MODULES,
    FULL_ENCODER_MODULES,
    AdaINModel,
    EncodedStyle,
    adain,
    adain_decoder,
    adain_encoder,
    calc_mean_std,
    check_layout,
    coral,
    encode_style,
    stylize_adain,
)


@pytest.fixture(scope="module")
def reference():
    """pytorch-AdaIN's two stacks (written out in tests/adain_nets.py) with seeded weights."""
    return seeded(reference_vgg, 1), seeded(reference_decoder, 2)


@pytest.fixture(scope="module")
def model(reference):
    vgg, decoder = reference
    encoder = adain_encoder()
    encoder.load_state_dict({k: v for k, v in vgg.state_dict().items() if int(k.split(".")[0]) < ENCODER_MODULES})
    mine = adain_decoder()
    mine.load_state_dict(decoder.state_dict())
    return AdaINModel(encoder, mine).eval()


def image(seed: int, h: int = 24, w: int = 24, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---- the operation ------------------------------------------------------------------------------------------

def test_mean_std_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, 1, 2, 2)
    x = torch.cat([x, torch.full((1, 1, 2, 2), 2.0)], dim=1)  # channel 1 is flat
    mean, std = calc_mean_std(x, eps=1e-5)
    assert mean.shape == std.shape == (1, 2, 1, 1)
    # channel 0: mean 2.5, unbiased variance (1.5^2 + 0.5^2 + 0.5^2 + 1.5^2) / 3 = 5/3
    assert mean.flatten().tolist() == [2.5, 2.0]
    assert std[0, 0].item() == pytest.approx(math.sqrt(5 / 3 + 1e-5), rel=1e-6)
    assert std[0, 1].item() == pytest.approx(math.sqrt(1e-5), rel=1e-4)  # a flat channel: sqrt(eps)


def test_adain_by_hand():
    # content [0, 0, 0, 4]: mean 1, unbiased variance (1 + 1 + 1 + 9) / 3 = 4, std 2 -> [-0.5, -0.5, -0.5, 1.5]
    # style [1, 3] (another size): mean 2, variance 2, std sqrt(2) -> 2 + sqrt(2) * normalised
    content = torch.tensor([0.0, 0.0, 0.0, 4.0]).view(1, 1, 2, 2)
    style = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    out = adain(content, style, eps=0.0)
    r = math.sqrt(2)
    expected = [2 - 0.5 * r, 2 - 0.5 * r, 2 - 0.5 * r, 2 + 1.5 * r]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    # an affine image of the content: AdaIN undoes the affinity and returns the style's statistics
    assert adain(torch.tensor([1.0, 2, 3, 4]).view(1, 1, 2, 2), torch.tensor([10.0, 20, 30, 40]).view(1, 1, 2, 2),
                 eps=0.0).flatten().tolist() == pytest.approx([10, 20, 30, 40], rel=1e-6)


def test_adain_output_has_the_style_statistics_and_ignores_the_content_scale():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(3, 8, 5, 7, generator=g) * 4 + 1
    style = torch.randn(1, 8, 9, 6, generator=g) * torch.rand(1, 8, 1, 1, generator=g) * 3 - 2
    out = adain(content, style, eps=0.0)  # a style batch of one applies to every content image
    mean_o, std_o = calc_mean_std(out, eps=0.0)
    mean_s, std_s = calc_mean_std(style, eps=0.0)
    torch.testing.assert_close(mean_o, mean_s.expand(3, -1, -1, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std_o, std_s.expand(3, -1, -1, -1), atol=1e-5, rtol=1e-5)
    # a positive per-channel scale and a shift of the content change nothing
    scale, shift = torch.rand(1, 8, 1, 1, generator=g) + 0.5, torch.randn(1, 8, 1, 1, generator=g)
    torch.testing.assert_close(adain(content * scale + shift, style, eps=0.0), out, atol=1e-4, rtol=1e-4)
    # with eps: std = sqrt(var_s + eps) * std_c / sqrt(var_c + eps) exactly
    _, std_c = calc_mean_std(content, eps=0.0)
    _, std_eps = calc_mean_std(adain(content, style, eps=1e-2), eps=0.0)
    expected = (std_s ** 2 + 1e-2).sqrt() * std_c / (std_c ** 2 + 1e-2).sqrt()
    torch.testing.assert_close(std_eps, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(std_eps, std_s.expand(3, -1, -1, -1), atol=1e-4, rtol=1e-4)


def test_adain_rejects_what_it_cannot_normalise():
    with pytest.raises(ValueError, match="same channels"):
        adain(torch.rand(1, 4, 3, 3), torch.rand(1, 5, 3, 3))
    with pytest.raises(ValueError, match="batch of 1"):
        adain(torch.rand(2, 4, 3, 3), torch.rand(3, 4, 3, 3))
    with pytest.raises(ValueError, match="at least two"):
        calc_mean_std(torch.rand(1, 4, 1, 1))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        calc_mean_std(torch.rand(4, 3, 3))
    with pytest.raises(ValueError, match="eps"):
        calc_mean_std(torch.rand(1, 4, 3, 3), eps=-1)


def test_coral_gives_the_target_mean_and_covariance():
    g = torch.Generator().manual_seed(3)
    mix = torch.tensor([[1.0, 0.3, 0.0], [0.2, 0.6, 0.1], [0.0, 0.4, 0.5]])
    source = torch.einsum("ij,jhw->ihw", mix, torch.rand(3, 20, 30, generator=g))[None]
    target = torch.rand(1, 3, 17, 11, generator=g) * torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    out = coral(source, target, eps=1e-8)
    assert out.shape == source.shape
    flat_o, flat_t = out.reshape(3, -1).double(), target.reshape(3, -1).double()
    torch.testing.assert_close(flat_o.mean(1), flat_t.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cov(flat_o), torch.cov(flat_t), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(coral(source, source, eps=1e-8), source, atol=1e-5, rtol=0)  # already matched
    with pytest.raises(ValueError, match="target must be one RGB image"):
        coral(source, torch.rand(2, 3, 4, 4))


# ---- the layout -----------------------------------------------------------------------------------------------

def test_stacks_have_pytorch_adains_exact_layout(reference):
    vgg, decoder = reference
    full, encoder, mine = adain_encoder(full=True), adain_encoder(), adain_decoder()
    assert (len(full), len(encoder), len(mine)) == (FULL_ENCODER_MODULES, ENCODER_MODULES, DECODER_MODULES)
    # their state dicts load into ours with strict=True, and ours into theirs
    full.load_state_dict(vgg.state_dict(), strict=True)
    mine.load_state_dict(decoder.state_dict(), strict=True)
    reference_vgg().load_state_dict(full.state_dict(), strict=True)
    reference_decoder().load_state_dict(mine.state_dict(), strict=True)
    for ours, theirs in zip(list(full) + list(mine), list(vgg) + list(decoder)):
        assert repr(ours) == repr(theirs)  # same module type and arguments at every index
    encoder.load_state_dict({k: v for k, v in vgg.state_dict().items() if int(k.split(".")[0]) < 31}, strict=True)
    x = image(0, 37, 29)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), vgg[:31](x), rtol=0, atol=0)
        torch.testing.assert_close(full(x), vgg(x), rtol=0, atol=0)
        features = torch.rand(1, 512, 3, 5)
        torch.testing.assert_close(mine(features), decoder(features), rtol=0, atol=0)


def test_check_layout_names_missing_unexpected_and_misshaped_keys(reference):
    vgg, decoder = reference
    state = dict(decoder.state_dict())
    assert check_layout(adain_decoder(), {f"module.{k}": v for k, v in state.items()}, "x").keys() == state.keys()
    del state["28.bias"]
    state["5.weight"] = torch.zeros(1)
    state["99.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        check_layout(adain_decoder(), state, "decoder.pth")
    message = str(info.value)
    assert "decoder.pth" in message and "naoto0804/pytorch-AdaIN" in message
    assert "missing keys: 28.bias" in message and "unexpected keys: 99.weight" in message
    assert "5.weight (1,) instead of (256, 256, 3, 3)" in message
    with pytest.raises(ValueError, match=r"unexpected keys: 32\.bias, 32\.weight, 35\.bias"):  # past relu4_1 only when allowed
        check_layout(adain_encoder(), vgg.state_dict(), "vgg_normalised.pth")


def test_model_encoder_is_frozen_and_intermediate_layers_are_the_style_layers(model):
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    model.train()
    assert model.decoder.training and not model.encoder.training
    model.eval()
    x = image(1, 30, 41)
    with torch.no_grad():
        features = model.encode_with_intermediate(x)
        assert [tuple(f.shape[1:]) for f in features] == [(64, 30, 41), (128, 15, 21), (256, 8, 11), (512, 4, 6)]
        torch.testing.assert_close(features[-1], model.encode(x), rtol=0, atol=0)
        torch.testing.assert_close(features[1], model.encoder[:ENCODER_LAYERS["relu2_1"]](x), rtol=0, atol=0)
    full = AdaINModel(adain_encoder(full=True))
    assert len(full.encoder) == ENCODER_MODULES  # a whole vgg_normalised stack is cut at relu4_1


# ---- stylising -----------------------------------------------------------------------------------------------

def test_stylize_matches_pytorch_adains_style_transfer(model, reference):
    vgg, decoder = reference
    content, style = image(2, 32, 40), image(3, 32, 32)
    for alpha in (1.0, 0.6):
        with torch.no_grad():
            expected = reference_style_transfer(vgg[:31], decoder, content, style, alpha).clamp(0, 1)
        out = stylize_adain(model, content, style, alpha=alpha)
        assert 0.05 < float(out.mean()) < 0.95  # not a clamped image: the comparison means something
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_alpha_zero_decodes_the_content_features(model):
    content = image(4, 27, 35)  # not a multiple of 8: the output is cropped back to the content's size
    with torch.no_grad():
        expected = model.decode(model.encode(content))[..., :27, :35].clamp(0, 1)
    out = stylize_adain(model, content, image(5), alpha=0.0)
    assert out.shape == (1, 3, 27, 35)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_interpolation_weights(model, reference):
    vgg, decoder = reference
    content, styles = image(6, 32, 32), [image(7, 32, 32), image(8, 32, 32), image(9, 32, 32)]
    single = stylize_adain(model, content, styles[1])
    torch.testing.assert_close(stylize_adain(model, content, styles, style_weights=[0, 1, 0]), single,
                               atol=1e-6, rtol=1e-6)
    blended = stylize_adain(model, content, styles, style_weights=[1, 2, 1], alpha=0.8)
    with torch.no_grad():  # their test.py: weights normalised to sum 1, styles as one batch
        expected = reference_style_transfer(vgg[:31], decoder, content, torch.cat(styles), 0.8,
                                            [0.25, 0.5, 0.25]).clamp(0, 1)
    torch.testing.assert_close(blended, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stylize_adain(model, content, styles, style_weights=[2, 4, 2], alpha=0.8), blended,
                               atol=1e-6, rtol=1e-6)
    equal = stylize_adain(model, content, styles)  # default: equal weights
    torch.testing.assert_close(equal, stylize_adain(model, content, styles, style_weights=[1, 1, 1]), rtol=0, atol=0)


def test_preserve_color_recolours_the_style_first(model):
    content, style = image(10, 32, 32), image(11, 24, 40) * torch.tensor([1.0, 0.3, 0.1]).view(1, 3, 1, 1)
    out = stylize_adain(model, content, style, preserve_color=True)
    recoloured = coral(style, content)  # may leave [0, 1] a little: it goes to the encoder as it is
    with torch.no_grad():
        features = model.encode(content)
        expected = model.decode(adain(features, model.encode(recoloured))).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out, stylize_adain(model, content, style))


def test_a_batch_of_contents_equals_one_at_a_time_and_sizes_apply(model):
    contents, style = image(12, 32, 24, batch=3), image(13)
    batch = stylize_adain(model, contents, style)
    for i in range(3):
        torch.testing.assert_close(batch[i:i + 1], stylize_adain(model, contents[i:i + 1], style), atol=1e-5, rtol=1e-5)
    assert stylize_adain(model, image(14, 40, 64), style, size=32).shape == (1, 3, 20, 32)


def test_an_encoded_style_gives_exactly_the_uncached_result(model):
    """Oracle: stylize_adain with the style images themselves. The encoder then runs once per call (the
    content) instead of once per image (counted by a forward hook)."""
    content, styles = image(20, 32, 40), [image(21, 32, 32), image(22, 40, 24)]
    calls = []
    hook = model.encoder.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    try:
        one = encode_style(model, styles[0])
        assert isinstance(one, EncodedStyle) and len(one.features) == 1 and one.features[0].shape[:2] == (1, 512)
        for alpha in (1.0, 0.6):
            calls.clear()
            cached = stylize_adain(model, content, one, alpha=alpha)
            assert calls == [(1, 3, 32, 40)]  # the content alone
            calls.clear()
            torch.testing.assert_close(cached, stylize_adain(model, content, styles[0], alpha=alpha), rtol=0, atol=0)
            assert len(calls) == 2
        both = encode_style(model, styles, style_size=36)
        assert len(both.features) == 2
        torch.testing.assert_close(stylize_adain(model, content, both, style_weights=[1, 3], alpha=0.8),
                                   stylize_adain(model, content, styles, style_weights=[1, 3], alpha=0.8, style_size=36),
                                   rtol=0, atol=0)
    finally:
        hook.remove()


def test_an_encoded_style_refuses_another_model_and_style_only_options(model):
    encoded = encode_style(model, image(23))
    with pytest.raises(ValueError, match="another model's encoder"):
        stylize_adain(AdaINModel(), image(24), encoded)
    with pytest.raises(ValueError, match="preserve_color=True recolours the style images"):
        stylize_adain(model, image(24), encoded, preserve_color=True)
    with pytest.raises(ValueError, match="style_size=32 applies when the style is encoded: pass it to encode_style"):
        stylize_adain(model, image(24), encoded, style_size=32)
    with pytest.raises(ValueError, match="must be a list of 1 numbers"):
        stylize_adain(model, image(24), encoded, style_weights=[1, 1])
    with pytest.raises(ValueError, match="empty list"):
        encode_style(model, [])


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 1.5}, r"alpha=1\.5 must be a number from 0"),
    ({"alpha": True}, "alpha"),
    ({"style_weights": [1, 2]}, r"must be a list of 1 numbers"),
    ({"style_weights": [-1]}, "finite numbers >= 0"),
    ({"style_weights": [0]}, "must not all be zero"),
    ({"size": 12}, r"at least 16 px"),
])
def test_bad_arguments_are_named(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stylize_adain(model, image(15), image(16), **kwargs)


def test_empty_style_list_and_bad_batches_are_refused(model):
    with pytest.raises(ValueError, match="empty list"):
        stylize_adain(model, image(15), [])
    with pytest.raises(ValueError, match=r"values in \[0, 255\]|expected \[0, 1\]"):
        stylize_adain(model, image(15, batch=2) * 255, image(16))
