"""nstlib.stylize: behaviour checked with properties and second computations, on tiny images."""

import json

import pytest
import torch

import nstlib
from nstlib import color
from nstlib.data import samples
from nstlib.images import load_image

SIZE = 32




@pytest.fixture(scope="module")
def other_style():
    return load_image(samples.standin("the_scream"), SIZE)


def run(content, style, **options):
    options = {"steps": 8, "size": SIZE, "weights": None, "progress": False, "device": "cpu", **options}
    return nstlib.stylize(content, style, **options)


def test_loss_decreases_and_history_matches_steps(content, style):
    calls = []
    result = run(content, style, steps=12, callback=lambda step, img, losses: calls.append((step, img.shape, losses)), callback_every=5)
    history = result.history
    assert all(len(history[k]) == 12 for k in ("total", "content", "style", "tv", "seconds"))
    assert history["total"][-1] < 0.5 * history["total"][0]
    assert [c[0] for c in calls] == [5, 10, 12]
    assert all(shape == result.image.shape for _, shape, _ in calls)
    assert set(calls[0][2]) == {"total", "content", "style", "tv"}
    assert history["seconds"] == sorted(history["seconds"])


def test_total_is_the_weighted_sum_of_its_parts(content, style):
    result = run(content, style, steps=3, content_weight=2.0, style_weight=5e5, tv_weight=3.0)
    h = result.history
    for i in range(3):
        expected = 2.0 * h["content"][i] + 5e5 * h["style"][i] + 3.0 * h["tv"][i]
        assert h["total"][i] == pytest.approx(expected, rel=1e-5)


def test_lbfgs_does_not_stop_early_on_tiny_gradients(content, style):
    result = run(content, style, steps=15, content_weight=1e-12, style_weight=1e-12)
    assert len(result.history["total"]) == 15


def test_output_is_an_image_in_unit_range_of_content_shape(content, style):
    result = run(content, style, optimizer="adam", steps=5, lr=0.5)
    assert result.image.shape == content.shape
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert len(result.history["total"]) == 5


def test_same_seed_same_output_and_noise_init_depends_on_seed(content, style):
    a = run(content, style, init="noise", seed=3, steps=4)
    b = run(content, style, init="noise", seed=3, steps=4)
    c = run(content, style, init="noise", seed=4, steps=4)
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    assert not torch.equal(a.image, c.image)


def test_init_from_a_tensor_is_used(content, style):
    grey = torch.full_like(content, 0.5)
    result = run(content, style, init=grey, steps=1, optimizer="adam", lr=1e-9)
    torch.testing.assert_close(result.image, grey, atol=1e-6, rtol=0)


def test_blend_weights_one_zero_equal_the_single_style_run(content, style, other_style):
    single = run(content, style, steps=5)
    blended = run(content, [style, other_style], style_blend_weights=[1, 0], steps=5)
    torch.testing.assert_close(blended.image, single.image)
    mixed = run(content, [style, other_style], style_blend_weights=[2, 2], steps=5)
    assert mixed.settings["style_blend_weights"] == [0.5, 0.5]


def test_preserve_color_keeps_the_content_chrominance(content, style):
    result = run(content, style, preserve_color=True, steps=6)
    iq_out = color.rgb_to_yiq(result.image)[:, 1:]
    iq_content = color.rgb_to_yiq(content)[:, 1:]
    # Clamping to [0, 1] can move a few saturated pixels; the rest keep the content's colours.
    close = (iq_out - iq_content).abs().amax(1) < 1e-3
    assert close.float().mean() > 0.9
    plain = run(content, style, steps=6)
    assert (color.rgb_to_yiq(plain.image)[:, 1:] - iq_content).abs().mean() > (iq_out - iq_content).abs().mean()


def test_multi_scale_reaches_the_requested_size(content, style):
    result = run(content, style, size=None, scales=[28, 36, 44], steps=[3, 2, 2])
    assert max(result.image.shape[-2:]) == 44
    assert len(result.history["total"]) == 7
    assert result.settings["scales"] == [28, 36, 44]


def test_layer_names_in_either_scheme_and_settings_are_json(content, style):
    result = run(content, style, steps=2, **nstlib.LAYER_PRESETS["seed"])
    assert result.settings["content_layers"] == ["conv2_2"]
    assert result.settings["style_layers"] == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    assert json.loads(json.dumps(result.settings))["steps"] == 2


def test_quick_mode_caps_steps_and_size(monkeypatch, content, style):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    result = nstlib.stylize(content, style, steps=300, size=512, progress=False, device="cpu")
    assert len(result.history["total"]) == nstlib.config.MAX_STEPS
    assert max(result.image.shape[-2:]) <= nstlib.config.MAX_SIZE
    assert result.settings["quick"] is True and result.settings["weights"] == "random"


@pytest.mark.parametrize(
    "options, argument",
    [
        ({"style_layers": ["conv1_1", "conv9_1"]}, "style_layers"),
        ({"content_layers": ["nope"]}, "content_layers"),
        ({"style_weight": -1.0}, "style_weight"),
        ({"content_weight": float("nan")}, "content_weight"),
        ({"size": 0}, "size"),
        ({"steps": 0}, "steps"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"init": "zeros"}, "init"),
        ({"scales": [64, 32]}, "scales"),
        ({"style_blend_weights": [1.0, 2.0]}, "style_blend_weights"),
        ({"layer_weights": {"conv3_3": 1.0}}, "layer_weights"),
    ],
)
def test_bad_arguments_name_the_argument(content, style, options, argument):
    with pytest.raises(ValueError, match=argument):
        run(content, style, **options)


def test_empty_style_list_is_refused(content):
    with pytest.raises(ValueError, match="style"):
        run(content, [])


def test_content_reconstruction_gets_closer_to_the_image(content):
    from nstlib.gatys import reconstruct_content

    result = reconstruct_content(content, "conv1_2", steps=20, size=SIZE, weights=None, progress=False, device="cpu")
    h = result.history
    assert h["style"] and h["total"][-1] < 0.2 * h["total"][0]
    noise_error = (torch.rand(content.shape, generator=torch.Generator().manual_seed(0)) - content).abs().mean()
    assert (result.image - content).abs().mean() < noise_error


def test_texture_synthesis_matches_grams_but_not_layout(style):
    from nstlib.gatys import synthesize_texture

    result = synthesize_texture(style, ["conv1_1", "conv2_1"], steps=20, size=SIZE, weights=None, progress=False, device="cpu")
    h = result.history
    assert h["total"] == pytest.approx([1e6 * s for s in h["style"]], rel=1e-5)  # content is switched off
    assert h["style"][-1] < 0.2 * h["style"][0]
    assert result.image.shape == style.shape


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_tiny_losses_do_not_stall_the_optimiser(content, style, optimizer):
    # The optimisers see the loss relative to its first value, so multiplying every weight by
    # 1e-9 (losses ~1e-10, as with random weights) leaves the relative progress unchanged;
    # without that, torch's L-BFGS (y.s <= 1e-10) and Adam (eps = 1e-8) barely move.
    def progress(scale):
        h = run(content, style, optimizer=optimizer, steps=8, content_weight=scale, style_weight=1e6 * scale).history
        return h["total"][-1] / h["total"][0]

    normal, tiny = progress(1.0), progress(1e-9)
    assert normal < 0.7
    assert tiny == pytest.approx(normal, rel=0.05)


def test_fast_path_matches_the_plain_path(content, style):
    # One L-BFGS step: the same losses and the same update (it is the gradient, scaled), so the
    # channels-last fast path computes what the plain path computes, to float tolerance. (Longer
    # runs drift apart the way any two float orderings do under L-BFGS.)
    fast = run(content, style, steps=1, fast=True)
    plain = run(content, style, steps=1, fast=False)
    for key in ("total", "content", "style"):
        assert fast.history[key][0] == pytest.approx(plain.history[key][0], rel=1e-5)
    step_fast, step_plain = fast.image - content, plain.image - content
    assert step_plain.abs().max() > 1e-3  # the step did move the pixels
    torch.testing.assert_close(step_fast, step_plain, atol=1e-3 * step_plain.abs().max().item(), rtol=0)
    assert fast.settings["fast"] is True and plain.settings["fast"] is False
