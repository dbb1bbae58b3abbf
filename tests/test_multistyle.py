"""Many styles in one network: training (learning, exact resumption, checkpoints, samples), blends, costs.

The architecture itself (conditional instance norms, index = one-hot, blend = mixed norms) is
tested in tests/test_transform_net.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import make_net
from PIL import Image
from torch.utils.data import Dataset

from nstlib import config
from nstlib.checkpoints import load_transform_net, save_transform_net
from nstlib.fast import stylize_image, stylize_images
from nstlib.multistyle import (
    MULTISTYLE_HISTORY_KEYS,
    blend_strip,
    extract_style,
    parameter_cost,
    style_for_step,
    train_multistyle_net,
)
from nstlib.perceptual import PerceptualLoss
from nstlib.training import train_transform_net
from nstlib.transform_net import TransformerNet, count_parameters

SIZE = 16


class Tiny(Dataset):
    """Smooth random ``SIZE``-px images; ``flip=True`` flips at random with the *global* torch RNG
    (so exact resumption also checks that the checkpoint restores it)."""

    def __init__(self, n: int = 5, seed: int = 0, flip: bool = False):
        coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
        self.images = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i]
        return image.flip(-1) if self.flip and torch.rand(()) < 0.5 else image


def stripes() -> torch.Tensor:
    rows = torch.arange(SIZE).view(1, 1, SIZE, 1).expand(1, 3, SIZE, SIZE)
    return (rows % 2).float() * torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)


def green() -> torch.Tensor:
    return torch.ones(1, 3, SIZE, SIZE) * torch.tensor([0.1, 0.8, 0.2]).view(1, 3, 1, 1)


FAST = dict(image_size=SIZE, batch_size=2, content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2"),
            content_weight=1.0, style_weight=1e4, weights=None, progress=False)


def train(styles=None, dataset=None, **options):
    return train_multistyle_net(styles if styles is not None else [stripes(), green()],
                                dataset if dataset is not None else Tiny(flip=True), **{**FAST, **options})


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- one reference run: 6 steps, random style order, checkpoints every 2, samples and callback ------------------

REFERENCE = dict(steps=6, style_order="random", checkpoint_every=2, keep_checkpoints=2, sample_every=3, log_every=3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multistyle")
    calls = []
    samples = [torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))]
    result = train(checkpoint_dir=folder, sample_images=samples, callback=lambda *a: calls.append(a), **REFERENCE)
    return result, folder, calls


def test_history_records_the_style_of_each_step(reference):
    result, _, _ = reference
    history = result.history
    assert set(history) == set(MULTISTYLE_HISTORY_KEYS)
    assert history["step"] == [1, 2, 3, 4, 5, 6]
    assert history["style_index"] == [style_for_step(k, 2, "random", 0) for k in range(1, 7)]
    np.testing.assert_allclose(history["total"], [c + 1e4 * s for c, s in zip(history["content"], history["style"])],
                               rtol=1e-5)
    assert result.settings["num_styles"] == 2 and result.settings["style_order"] == "random"
    assert result.net.num_styles == 2 and not result.net.training


def test_style_for_step_cycles_or_draws_from_seed_and_step_alone():
    assert [style_for_step(k, 3) for k in range(1, 8)] == [0, 1, 2, 0, 1, 2, 0]
    draws = [style_for_step(k, 3, "random", seed=4) for k in range(1, 61)]
    torch.manual_seed(123)  # the global RNG plays no part
    assert draws == [style_for_step(k, 3, "random", seed=4) for k in range(1, 61)]
    assert set(draws) == {0, 1, 2} and draws != [style_for_step(k, 3, "random", seed=5) for k in range(1, 61)]


def test_samples_show_every_style_in_the_grid_and_the_callback(reference):
    result, folder, calls = reference
    grid = np.asarray(Image.open(folder / "samples" / "step_000006.png").convert("RGB"))
    assert grid.shape == (2 * (2 * SIZE + 2), SIZE, 3)  # per style: input above, result below; styles stacked
    got = {step: images for step, _, images in calls}
    assert sorted(got) == [3, 6] and len(got[6]) == 2  # one sample in each of 2 styles, style 0 first
    for style in (0, 1):
        want = (got[6][style][0].permute(1, 2, 0).numpy() * 255).round()
        top = style * (2 * SIZE + 2) + SIZE + 2
        np.testing.assert_array_equal(grid[top:top + SIZE], want)


def test_the_training_checkpoint_loads_as_a_multistyle_net(reference):
    result, folder, _ = reference
    net = load_transform_net(folder / "step_000006.pth")
    assert net.config == result.net.config and net.num_styles == 2
    assert same_weights(net, result.net)


def test_resume_gives_the_same_weights_as_one_run(reference, tmp_path):
    result, _, _ = reference
    first = train(checkpoint_dir=tmp_path, **{**REFERENCE, "steps": 3})
    assert first.history["step"] == [1, 2, 3]
    torch.manual_seed(999)  # disturb the global RNG: the checkpoint must restore it
    resumed = train(checkpoint_dir=tmp_path, resume=True, **REFERENCE)
    assert same_weights(resumed.net, result.net)
    for key in ("step", "total", "content", "style", "style_index"):
        assert resumed.history[key] == result.history[key]


@pytest.mark.parametrize("change, match", [
    ({"style_order": "cycle"}, "style_order"),
    ({"styles": [stripes(), green(), stripes()]}, "num_styles"),
])
def test_resume_with_other_styles_or_order_is_refused(reference, change, match):
    _, folder, _ = reference
    options = {**REFERENCE, **change}
    with pytest.raises(ValueError, match=match):
        train(options.pop("styles", None), checkpoint_dir=folder, resume=True, **options)


def test_a_one_style_run_refuses_a_multistyle_checkpoint(reference):
    _, folder, _ = reference
    options = {k: v for k, v in {**FAST, **REFERENCE}.items() if k != "style_order"}
    with pytest.raises(ValueError, match="num_styles: checkpoint 2, now None"):
        train_transform_net([stripes(), green()], Tiny(flip=True), checkpoint_dir=folder, resume=True, **options)


def test_unknown_options_and_bad_styles_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['epoch'\\]"):
        train(steps=1, epoch=1)
    with pytest.raises(TypeError, match="'style'"):
        train(steps=1, style=green())
    with pytest.raises(ValueError, match="styles must be a non-empty list"):
        train(green(), steps=1)
    with pytest.raises(ValueError, match="style_order"):
        train(steps=1, style_order="shuffle")


# ---- learning -----------------------------------------------------------------------------------------------

def test_a_step_trains_only_its_own_style_rows():
    """Step 1 trains style 0 (cycle): Adam's first step moves a parameter only where its gradient is
    non-zero, so style 1's scales and shifts keep their initial 1 and 0 exactly."""
    net = train(steps=1).net
    gammas = {k: v for k, v in net.state_dict().items() if k.endswith("norm.gamma")}
    betas = {k: v for k, v in net.state_dict().items() if k.endswith("norm.beta")}
    assert all(torch.equal(g[1], torch.ones_like(g[1])) for g in gammas.values())
    assert all(not b[1].any() for b in betas.values())
    assert all(not torch.equal(g[0], torch.ones_like(g[0])) for g in gammas.values())


def test_one_style_trains_like_a_one_style_network():
    """Oracle: train_transform_net. With one style, every step trains style 0, whose norm rows start at the
    plain instance norms' 1 and 0 and the convolutions draw the same seeded weights, so the shared
    training loop (style index 0 vs None) gives the same losses and weights, row 0 of gamma/beta being
    the one-style net's norm weight/bias."""
    multi = train([stripes()], steps=4)
    single = train_transform_net(stripes(), Tiny(flip=True), steps=4, **FAST)
    torch.testing.assert_close(multi.history["total"], single.history["total"])
    assert multi.history["style_index"] == [0, 0, 0, 0]
    rows = {key.replace(".norm.gamma", ".norm.weight").replace(".norm.beta", ".norm.bias"): value[0] if ".norm." in key
            else value for key, value in multi.net.state_dict().items()}
    expected = single.net.state_dict()
    assert rows.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(rows[key], value, msg=key)


def test_training_lowers_the_loss_of_each_style():
    """10 steps (cycle) on 4 images: for each style, its perceptual loss (computed here with a fresh
    PerceptualLoss) of the trained net is under 0.8 of that of the untrained net (same seed)."""
    data = Tiny(n=4)
    result = train(dataset=data, steps=10)
    config.set_seed(0)
    untrained = TransformerNet(num_styles=2).eval()
    x = data.images
    loss = PerceptualLoss(FAST["content_layers"], FAST["style_layers"], content_weight=1.0, style_weight=1e4,
                          weights=None)
    with torch.no_grad():
        own = loss.extractor(x)
        targets = {name: own[name] for name in loss.content_layers}
        for style, image in enumerate([stripes(), green()]):
            loss.set_style(image)
            before = float(loss(untrained(x, style=style), targets)["total"])
            after = float(loss(result.net(x, style=style), targets)["total"])
            assert after < 0.8 * before, (style, before, after)


# ---- using a multi-style network ---------------------------------------------------------------------------

def test_checkpoint_round_trip_keeps_every_style(tmp_path):
    net = make_net(3, base=8, num_styles=3)
    loaded = load_transform_net(save_transform_net(net, tmp_path / "multi.pth", note="three styles"))
    assert loaded.config == net.config == {"upsample": "nearest", "base": 8, "output": "none", "pixel_scale": 1.0,
                                           "num_styles": 3}
    assert same_weights(loaded, net) and loaded.metadata == {"note": "three styles"}
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        for style in (0, 2, [0.2, 0.3, 0.5]):
            assert torch.equal(loaded(x, style=style), net(x, style=style))


def test_blend_strip_runs_from_style_a_to_style_b():
    net = make_net(4, base=8, num_styles=3)
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(4))
    strip = blend_strip(net, image, 0, 2, n=5)
    assert len(strip) == 5 and all(s.shape == (1, 3, 20, 24) for s in strip)
    assert torch.equal(strip[0], stylize_image(net, image, style=0))
    assert torch.equal(strip[-1], stylize_image(net, image, style=2))
    torch.testing.assert_close(strip[2], stylize_image(net, image, style=[0.5, 0.0, 0.5]))
    torch.testing.assert_close(strip[1], stylize_image(net, image, style=[0.75, 0.0, 0.25]))
    with pytest.raises(ValueError, match="n=1"):
        blend_strip(net, image, 0, 1, n=1)
    with pytest.raises(ValueError, match="b=3"):
        blend_strip(net, image, 0, 3)
    with pytest.raises(ValueError, match="multi-style"):
        blend_strip(TransformerNet(base=4), image, 0, 1)


def test_extract_style_gives_a_one_style_net_with_the_same_output():
    net = make_net(8, base=8, num_styles=3)
    x = torch.rand(2, 3, 20, 20)
    for style in (1, [0.1, 0.6, 0.3]):
        single = extract_style(net, style)
        assert single.num_styles is None and "num_styles" not in single.config
        with torch.no_grad():
            torch.testing.assert_close(single(x), net(x, style=style), atol=1e-6, rtol=1e-6)
    assert extract_style(net, 0).down[0].norm.weight.data_ptr() != net.down[0].norm.gamma.data_ptr()


def test_parameter_cost_per_style_is_two_scales_per_normalised_channel():
    cost = parameter_cost(4)
    # normalised channels at base 32: 32 + 64 + 128 (down) + 10 * 128 (residual) + 64 + 32 (up) = 1600
    assert cost["per_style"] == 2 * 1600 == 3200
    assert cost["single_style"] == 1_679_235
    assert cost["shared"] == 1_679_235 - 3200
    assert cost["multi_style"] == 1_679_235 + 3 * 3200 == count_parameters(TransformerNet(num_styles=4))
    assert cost["separate_networks"] == 4 * 1_679_235
    assert cost["per_style_fraction"] == pytest.approx(3200 / 1_679_235) and 0.0019 < cost["per_style_fraction"] < 0.002
    assert cost["saving"] == pytest.approx(1 - (1_679_235 + 3 * 3200) / (4 * 1_679_235))
    assert parameter_cost(2, base=4)["per_style"] == 2 * 50 * 4


def test_stylize_image_and_images_pass_the_style_on():
    net = make_net(9, base=8, num_styles=2)
    photos = [torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with torch.no_grad():
        for style in (1, [0.3, 0.7]):
            want = [net(p, style=style).clamp(0, 1) for p in photos]
            assert torch.equal(stylize_image(net, photos[0], style=style), want[0])
            for got, expected in zip(stylize_images(net, photos, batch_size=2, style=style), want):
                torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # batched: rounding only
