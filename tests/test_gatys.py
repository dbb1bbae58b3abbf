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


# -- one step of fast=True equals one step of the plain computation --------------------------------


def raw_loss_and_gradient(content, style, image, **weights):
    """An independent oracle: the weighted total and its autograd gradient at ``image``, computed with a
    fresh PerceptualLoss in the plain (contiguous) layout, the default layers and random weights."""
    loss = nstlib.PerceptualLoss(nstlib.GATYS_CONTENT_LAYERS, nstlib.GATYS_STYLE_LAYERS, weights=None, **weights)
    loss.set_content(content)
    loss.set_style([style])
    x = image.clone().requires_grad_(True)
    total = loss(x)["total"]
    total.backward()
    return total.detach().item(), x.grad


@pytest.mark.parametrize("fast", [True, False])
def test_one_step_of_either_path_is_the_gradient_step_of_the_plain_loss(content, style, fast):
    # The documented guarantee of fast=True: one evaluation and its gradient agree with the plain
    # path within float tolerance. Oracle: torch's first L-BFGS update is x - t * g with
    # t = lr * min(1, 1 / |g|_1), where g is the gradient of total / total_0 (rescale_loss=True).
    lr = 20.0
    result = run(content, style, steps=1, lr=lr, fast=fast)
    total0, grad = raw_loss_and_gradient(content, style, content, content_weight=1.0, style_weight=1e6)
    assert result.history["total"][0] == pytest.approx(total0, rel=1e-5)
    g = grad / total0
    expected = (content - lr * min(1.0, 1.0 / g.abs().sum().item()) * g).clamp(0, 1)
    step = (expected - content).abs().max().item()
    assert step > 1e-2  # the step is large enough to show the gradient at every pixel
    torch.testing.assert_close(result.image, expected, atol=1e-4 * step, rtol=0)


def test_fast_and_plain_first_adam_steps_agree_within_float_tolerance(content, style):
    # Same first losses and same first update within float tolerance (long runs may drift apart).
    # Raw weights 1e-6 times the usual put the gradient near Adam's eps, where the first update
    # lr * g / (|g| + eps) depends on the gradient's values, not only on its signs.
    fast = run(content, style, steps=1, optimizer="adam", lr=0.05, fast=True, rescale_loss=False,
               content_weight=1e-6, style_weight=1.0)
    plain = run(content, style, steps=1, optimizer="adam", lr=0.05, fast=False, rescale_loss=False,
                content_weight=1e-6, style_weight=1.0)
    for key in ("total", "content", "style", "tv"):
        assert fast.history[key][0] == pytest.approx(plain.history[key][0], rel=1e-5, abs=1e-30)
    torch.testing.assert_close(fast.image, plain.image, atol=1e-4 * 0.05, rtol=0)


# -- rescale_loss ---------------------------------------------------------------------------------


def adam_first_step(image, grad, lr):
    """torch's first Adam update (bias-corrected): x - lr * g / (|g| + eps), eps = 1e-8, then the clamp."""
    return (image - lr * grad / (grad.abs() + 1e-8)).clamp(0, 1)


@pytest.mark.parametrize("rescale_loss", [True, False])
def test_the_objective_is_the_rescaled_or_the_raw_weighted_total(content, style, rescale_loss):
    # Weights 1e-6 times smaller than usual: raw gradients near Adam's eps, so the first Adam step
    # tells g (raw) from g / total_0 (rescaled). The oracle gradient is computed independently.
    lr, weights = 0.05, {"content_weight": 1e-6, "style_weight": 1.0, "tv_weight": 1e-6}
    result = run(content, style, steps=1, optimizer="adam", lr=lr, fast=False, rescale_loss=rescale_loss, **weights)
    total0, grad = raw_loss_and_gradient(content, style, content, **weights)
    raw, rescaled = adam_first_step(content, grad, lr), adam_first_step(content, grad / total0, lr)
    assert (raw - rescaled).abs().max() > 10 * lr * 1e-3  # the two objectives are told apart
    torch.testing.assert_close(result.image, rescaled if rescale_loss else raw, atol=lr * 1e-3, rtol=0)
    assert result.history["total"][0] == pytest.approx(total0, rel=1e-5)  # the history is always raw
    assert result.settings["rescale_loss"] is rescale_loss


def test_with_rescaling_scaling_every_weight_changes_nothing(content, style):
    weights = {"content_weight": 1.0, "style_weight": 1e6, "tv_weight": 10.0}

    def image(scale, rescale_loss):
        scaled = {key: value * scale for key, value in weights.items()}
        return run(content, style, steps=5, optimizer="adam", lr=0.05, init="noise", rescale_loss=rescale_loss,
                   **scaled)

    reference = image(1.0, True)
    for scale in (1000.0, 1e-9):
        torch.testing.assert_close(image(scale, True).image, reference.image, atol=1e-5, rtol=0)
    # Without it the optimiser sees the raw total: at weights 1e-9 times the usual (losses ~1e-9,
    # as with random VGG weights) Adam's eps swamps the gradient and the image stalls.
    start = run(content, style, steps=1, optimizer="adam", lr=1e-12, init="noise").image
    tiny = image(1e-9, False)
    assert (tiny.image - start).abs().mean() < 0.01 * (reference.image - start).abs().mean()
    assert tiny.history["total"][-1] > 0.99 * tiny.history["total"][0]
    assert reference.history["total"][-1] < 0.5 * reference.history["total"][0]
    torch.testing.assert_close(image(1.0, False).image, reference.image, atol=1e-2, rtol=0)  # eps negligible here


def test_texture_synthesis_ignores_style_weight_only_with_rescaling(style):
    from nstlib.gatys import synthesize_texture

    def texture(style_weight, rescale_loss):
        return synthesize_texture(style, ["conv1_1", "conv2_1"], steps=4, size=SIZE, weights=None, progress=False,
                                  device="cpu", optimizer="adam", style_weight=style_weight, rescale_loss=rescale_loss)

    a, b = texture(1e6, True), texture(1.0, True)
    torch.testing.assert_close(a.image, b.image, atol=1e-4, rtol=0)
    assert a.history["total"][0] == pytest.approx(1e6 * b.history["total"][0], rel=1e-5)
    c = texture(1e-3, False)
    assert c.settings["rescale_loss"] is False and not torch.allclose(c.image, a.image, atol=1e-2)


# -- size=None -------------------------------------------------------------------------------------


def test_without_size_an_image_in_memory_keeps_its_size(content, style):
    big = load_image(samples.standin("tubingen"), 40)
    result = nstlib.stylize(big, style, steps=1, weights=None, progress=False, device="cpu")
    assert result.image.shape == big.shape and result.settings["size"] == 40
    pil = nstlib.to_pil(big)
    from_pil = nstlib.stylize(pil, style, steps=1, weights=None, progress=False, device="cpu")
    assert from_pil.image.shape[-2:] == (pil.height, pil.width)


def test_without_size_a_file_gets_512_px(tmp_path, style):
    path = tmp_path / "photo.png"
    nstlib.save_image(load_image(samples.standin("tubingen"), 60), path)  # 60 px long side on disk
    expected = load_image(path, 512).shape  # the aspect-kept 512 px version of the file
    layers = {"content_layers": ["conv1_1"], "style_layers": ["conv1_1"]}  # keep the 512 px run cheap
    for source in (str(path), path):
        result = nstlib.stylize(source, style, steps=1, weights=None, progress=False, device="cpu", **layers)
        assert result.image.shape == expected and max(expected[-2:]) == 512
        assert result.settings["size"] == 512


def test_scales_alone_set_the_output_size_and_must_agree_with_size(content, style):
    result = nstlib.stylize(content, style, scales=[28, 36], steps=1, weights=None, progress=False, device="cpu")
    assert max(result.image.shape[-2:]) == 36 and result.settings["scales"] == [28, 36]
    assert result.settings["size"] == 36
    with pytest.raises(ValueError, match=r"size=32 differs from the last of scales=\[28, 36\]"):
        nstlib.stylize(content, style, size=32, scales=[28, 36], steps=1, weights=None, progress=False)


def test_quick_mode_caps_an_image_in_memory_without_size(monkeypatch, style):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    big = torch.rand(1, 3, 75, 100, generator=torch.Generator().manual_seed(0))
    result = nstlib.stylize(big, style, steps=1, progress=False, device="cpu")
    assert result.image.shape == (1, 3, 48, 64) and nstlib.config.MAX_SIZE == 64


def test_reconstructions_keep_their_own_default_size(content, style):
    from nstlib.gatys import reconstruct_content, synthesize_texture

    options = {"steps": 1, "weights": None, "progress": False, "device": "cpu"}
    recon = reconstruct_content(content, "conv1_1", rescale_loss=False, **options)
    texture = synthesize_texture(style, ["conv1_1"], **options)
    assert max(recon.image.shape[-2:]) == 256 and max(texture.image.shape[-2:]) == 256
    assert recon.settings["rescale_loss"] is False and texture.settings["rescale_loss"] is True


def test_zero_content_and_style_weights_are_refused_before_any_work(content, style, monkeypatch):
    # content_weight = style_weight = tv_weight = 0: the loss is 0 everywhere, nothing moves and the
    # "result" would be the start image (the content) returned as if it were stylised
    loaded = []
    monkeypatch.setattr("nstlib.gatys.load_image", lambda *args, **kwargs: loaded.append(args) or content)
    with pytest.raises(ValueError, match=r"content_weight=0\.0 and style_weight=0\.0") as info:
        run(content, style, content_weight=0, style_weight=0.0, tv_weight=0)
    assert "content_weight > 0" in str(info.value) and "style_weight > 0" in str(info.value)
    assert loaded == []  # refused with the other argument checks, before the images are loaded
    monkeypatch.undo()
    # one of the two at zero stays allowed (reconstructions and texture synthesis rely on it), and so
    # does total variation alone (a smoothing of the content)
    for weights in ({"content_weight": 0.0}, {"style_weight": 0.0}, {"content_weight": 0, "style_weight": 0,
                                                                        "tv_weight": 1.0}):
        result = run(content, style, steps=2, optimizer="adam", **weights)
        assert result.image.shape == content.shape and len(result.history["total"]) == 2
    assert nstlib.total_variation(result.image) < nstlib.total_variation(content)  # tv alone smooths
