"""Fine-tuning a fast network towards Gatys results: targets, the fine-tuning loss, the evaluation table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nets import make_net

from nstlib import config
from nstlib.fast import stylize_image
from nstlib.finetune import (
    FINETUNE_HISTORY_KEYS,
    evaluate_against_gatys,
    finetune_from_gatys,
    gatys_targets,
    johnson_loss,
    mean_by_output,
)
from nstlib.gatys import stylize
from nstlib.perceptual import PerceptualLoss

SIZE = 16
LAYERS = dict(content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2"))


def images(n: int, seed: int, size: int = SIZE) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(size, size), mode="bilinear",
                                            align_corners=False) for _ in range(n)]


STYLE = images(1, seed=99)[0]


def small_loss(**options) -> PerceptualLoss:
    return johnson_loss(None, **{**LAYERS, "content_weight": 1.0, "style_weight": 1e4, **options})


def test_gatys_targets_are_stylize_results_of_each_photo():
    photos = images(2, seed=1)
    targets = gatys_targets(photos, STYLE, steps=3, weights=None, **LAYERS)
    assert [t.shape for t in targets] == [(1, 3, SIZE, SIZE)] * 2
    for photo, target in zip(photos, targets):
        assert torch.equal(target, stylize(photo, STYLE, steps=3, weights=None, progress=False, **LAYERS).image)


def test_a_large_pixel_weight_pulls_the_outputs_towards_the_targets():
    """Oracle: the mean pixel distance between the clamped fast output and its target, before and after."""
    net = make_net(1, base=8)
    photos, targets = images(2, seed=2), images(2, seed=3)  # any images serve as targets here
    kept = {k: v.clone() for k, v in net.state_dict().items()}
    tuned, history = finetune_from_gatys(net, photos, targets, STYLE, steps=30, target_weight=1e4, lr=1e-2,
                                         loss=small_loss(), progress=False)

    def distance(model):
        return sum(float(F.mse_loss(stylize_image(model, x), t)) for x, t in zip(photos, targets)) / len(photos)

    assert distance(tuned) < 0.5 * distance(net)
    assert all(torch.equal(v, kept[k]) for k, v in net.state_dict().items())  # the input net is unchanged
    assert not tuned.training and set(history) == set(FINETUNE_HISTORY_KEYS)
    assert history["step"] == list(range(1, 31)) and history["photo"] == [0, 1] * 15


def test_history_total_is_perceptual_plus_weighted_target():
    net = make_net(2, base=8)
    _, history = finetune_from_gatys(net, images(2, 4), images(2, 5), STYLE, steps=4, target_weight=7.0,
                                     loss=small_loss(), progress=False)
    for total, perceptual, target, content, style in zip(*(history[k] for k in
                                                           ("total", "perceptual", "target", "content", "style"))):
        assert total == pytest.approx(perceptual + 7.0 * target, rel=1e-5)
        assert perceptual == pytest.approx(1.0 * content + 1e4 * style, rel=1e-5)


@pytest.mark.parametrize("kind", ["pixel", "perceptual"])
def test_the_first_steps_distance_is_computed_independently(kind):
    """Step 1 sees the untouched net: its target distance equals the oracle's (pixel MSE, or the
    content term of a fresh PerceptualLoss whose content target is the Gatys image)."""
    net = make_net(3, base=8)
    photo, target = images(1, 6)[0], images(1, 7)[0]
    _, history = finetune_from_gatys(net, [photo], [target], STYLE, steps=1, target_weight=1.0, kind=kind,
                                     loss=small_loss(), progress=False)
    with torch.no_grad():
        y = net(photo)
        if kind == "pixel":
            want = float(((y - target) ** 2).mean())
        else:
            oracle = PerceptualLoss(LAYERS["content_layers"], LAYERS["style_layers"], weights=None)
            oracle.set_content(target)
            oracle.set_style(STYLE)
            want = float(oracle(y)["content"])
    assert history["target"][0] == pytest.approx(want, rel=1e-5)


def test_evaluate_reports_the_losses_a_fresh_perceptual_loss_computes():
    before, after = make_net(4, base=8), make_net(5, base=8)
    photos, gatys = images(2, 8), images(2, 9)
    rows = evaluate_against_gatys({"before": before, "after": after}, photos, STYLE, gatys, small_loss())
    assert [(r["photo"], r["output"]) for r in rows] == [(i, name) for i in (0, 1) for name in ("before", "after", "gatys")]
    oracle = PerceptualLoss(LAYERS["content_layers"], LAYERS["style_layers"], content_weight=1.0, style_weight=1e4,
                            weights=None)
    for row in rows:
        i = row["photo"]
        oracle.set_content(photos[i])
        oracle.set_style(STYLE)
        net = {"before": before, "after": after}.get(row["output"])
        image = gatys[i] if net is None else net(photos[i]).detach().clamp(0, 1)
        want = oracle(image)
        for key in ("content", "style", "total"):
            assert row[key] == pytest.approx(float(want[key]), rel=1e-4)
        assert row["pixel_distance"] == pytest.approx(float(((image - gatys[i]) ** 2).mean()), rel=1e-5, abs=1e-12)
    assert all(r["pixel_distance"] == 0 for r in rows if r["output"] == "gatys")
    table = mean_by_output(rows)
    assert [t["output"] for t in table] == ["before", "after", "gatys"] and table[0]["photos"] == 2
    assert table[1]["style"] == pytest.approx((rows[1]["style"] + rows[4]["style"]) / 2)


def test_quick_mode_caps_the_steps_on_tiny_synthetic_photos(monkeypatch, no_network):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    monkeypatch.setattr(config, "_announced", True)
    photos = images(2, 10, size=24)  # quick mode loads them at 64 px
    targets = gatys_targets(photos, STYLE, steps=50, **LAYERS)  # "imagenet" weights become random ones
    assert [t.shape for t in targets] == [(1, 3, config.MAX_SIZE, config.MAX_SIZE)] * 2
    tuned, history = finetune_from_gatys(make_net(6, base=8), photos, targets, STYLE, steps=50, target_weight=1.0,
                                         loss=johnson_loss(**LAYERS), progress=False)
    assert len(history["step"]) == config.MAX_STEPS
    rows = evaluate_against_gatys(tuned, photos, STYLE, targets, johnson_loss(**LAYERS))
    assert [r["output"] for r in rows] == ["fast", "gatys"] * 2


def test_bad_arguments_are_refused_naming_them():
    net, photos = make_net(7, base=8), images(2, 11)
    with pytest.raises(ValueError, match="kind="):
        finetune_from_gatys(net, photos, photos, STYLE, steps=1, target_weight=1, kind="l1")
    with pytest.raises(ValueError, match="2 photos but 1 targets"):
        finetune_from_gatys(net, photos, photos[:1], STYLE, steps=1, target_weight=1)
    with pytest.raises(ValueError, match=r"targets\[1\] is \(1, 3, 20, 20\)"):
        finetune_from_gatys(net, photos, [photos[0], images(1, 12, size=20)[0]], STYLE, steps=1, target_weight=1)
    with pytest.raises(ValueError, match="target_weight"):
        finetune_from_gatys(net, photos, photos, STYLE, steps=1, target_weight=-1)
    with pytest.raises(ValueError, match="named 'gatys'"):
        evaluate_against_gatys({"gatys": net}, photos, STYLE, photos, small_loss())
