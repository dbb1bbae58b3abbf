"""train_transform_net: learning, exact resumption, checkpoints, pruning, samples, callbacks, divergence, checks."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from nstlib import config, training as trainer
from nstlib.losses import gram_matrix
from nstlib.perceptual import PerceptualLoss
from nstlib.training import (
    HISTORY_KEYS,
    TrainingDivergedError,
    epoch_order,
    train_transform_net,
)
from nstlib.checkpoints import load_transform_net

SIZE = 16  # the smallest image TransformerNet takes: the default network, but cheap




class Tiny(Dataset):
    """Smooth random images of ``height x width``; ``flip=True`` flips at random with the *global* torch RNG.

    The random flip makes the run depend on the global RNG state, so exact resumption also checks
    that the checkpoint restores it.
    """

    def __init__(self, n: int = 7, height: int = SIZE, width: int = SIZE, seed: int = 0, flip: bool = False):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, max(2, height // 4), max(2, width // 4), generator=g)
        self.images = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image


def style_image(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


FAST = dict(image_size=SIZE, batch_size=2, content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2"),
            content_weight=1.0, style_weight=1e4, weights=None, progress=False)
"""Shallow layers, random VGG weights, 16 px, batch 2: a few hundredths of a second per step."""


def train(dataset=None, **options):
    kwargs = {**FAST, **options}
    return train_transform_net(kwargs.pop("style", style_image()), dataset if dataset is not None else Tiny(flip=True),
                               **kwargs)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# ---- one reference run, inspected by several tests ---------------------------------------------------------

REFERENCE = dict(steps=6, checkpoint_every=2, keep_checkpoints=2, sample_every=4, log_every=2)
SAMPLE_SHAPES = [(SIZE, SIZE), (SIZE, SIZE)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """6 steps over 7 images in batches of 2 (3 steps per epoch), checkpoints every 2 steps, 2 kept."""
    folder = tmp_path_factory.mktemp("reference")
    calls = []
    samples = [torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(i)) for i, (h, w) in enumerate(SAMPLE_SHAPES)]
    result = train(checkpoint_dir=folder, sample_images=samples, callback=lambda *args: calls.append(args),
                   **REFERENCE)
    return result, folder, calls, samples


def test_reference_run_history_is_complete_and_consistent(reference):
    result, _, _, _ = reference
    history = result.history
    assert set(history) == set(HISTORY_KEYS)
    assert all(len(values) == 6 for values in history.values())
    assert history["step"] == [1, 2, 3, 4, 5, 6]
    assert history["lr"] == [1e-3] * 6
    assert all(b >= a for a, b in zip(history["seconds"], history["seconds"][1:]))
    # second formula: total = content_weight * content + style_weight * style (+ 0 * tv)
    expected = [1.0 * c + 1e4 * s for c, s in zip(history["content"], history["style"])]
    np.testing.assert_allclose(history["total"], expected, rtol=1e-5)
    assert result.steps == 6 and result.final_losses()["total"] == history["total"][-1]
    assert result.settings["steps_per_epoch"] == 3 and result.settings["dataset_length"] == 7


def test_checkpoints_load_with_weights_only_and_hold_the_training_state(reference):
    result, folder, _, _ = reference
    state = torch.load(folder / "step_000006.pth", map_location="cpu", weights_only=True)
    assert state["kind"] == trainer.CHECKPOINT_KIND and state["step"] == 6
    assert (state["epoch"], state["batch_in_epoch"], state["data_seed"]) == (2, 0, 0)
    assert set(state["optimizer"]) == {"state", "param_groups"} and state["optimizer"]["state"]
    assert isinstance(state["rng"]["torch"], torch.Tensor) and isinstance(state["rng"]["python"][1], list)
    assert state["rng"]["numpy"]["keys"].shape == (624,)
    assert state["history"]["total"].tolist() == result.history["total"]
    assert state["settings"]["image_size"] == SIZE
    middle = torch.load(folder / "step_000004.pth", map_location="cpu", weights_only=True)
    assert (middle["epoch"], middle["batch_in_epoch"]) == (1, 1)  # 4 steps = one epoch of 3, plus 1 batch
    # load_transform_net reads the training checkpoint and gives the trained network
    net = load_transform_net(result.checkpoint_path)
    assert result.checkpoint_path == folder / "step_000006.pth"
    assert same_weights(net, result.net)
    x = Tiny(n=1).images
    with torch.no_grad():
        assert torch.equal(net(x), result.net.eval()(x))
    assert net.metadata["step"] == 6
    # latest.pth is a copy of the newest checkpoint
    assert (folder / "latest.pth").read_bytes() == (folder / "step_000006.pth").read_bytes()


def test_pruning_keeps_the_newest_checkpoints_and_no_temporary_files(reference):
    _, folder, _, _ = reference
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["latest.pth", "step_000004.pth", "step_000006.pth"]
    assert not list(folder.rglob("*.tmp"))


def test_samples_are_saved_as_grids_and_passed_to_the_callback(reference):
    _, folder, calls, samples = reference
    files = sorted(p.name for p in (folder / "samples").iterdir())
    assert files == ["step_000004.png", "step_000006.png"]  # every 4 steps and at the end
    grid = np.asarray(Image.open(folder / "samples" / "step_000006.png").convert("RGB"))
    assert grid.shape == (2 * SIZE + 2, 2 * SIZE + 2, 3)  # 2 rows (inputs, results) x 2 columns, 2 px gaps
    # the top row holds the inputs, on a white background
    for i, sample in enumerate(samples):
        pixels = (sample[0].permute(1, 2, 0).numpy() * 255).round()
        np.testing.assert_array_equal(grid[:SIZE, i * (SIZE + 2):i * (SIZE + 2) + SIZE], pixels)
    assert (grid[SIZE:SIZE + 2] == 255).all() and (grid[:, SIZE:SIZE + 2] == 255).all()
    # the callback got the samples at the sample steps that are also log steps
    got = {step: images for step, _, images in calls}
    assert got[2] is None
    for step in (4, 6):
        assert [tuple(s.shape) for s in got[step]] == [(1, 3, h, w) for h, w in SAMPLE_SHAPES]


def test_sample_grid_centres_images_of_different_shapes_on_white():
    tall, wide = torch.rand(1, 3, 6, 4), torch.rand(1, 3, 3, 6)
    out_tall, out_wide = torch.zeros(1, 3, 6, 4), torch.full((1, 3, 3, 6), 2.0)  # 2.0 is clamped to 1
    grid = trainer._sample_grid([tall, wide], [out_tall, out_wide], gap=1)
    assert grid.shape == (1, 3, 2 * 6 + 1, 2 * 6 + 1)  # cells of the largest side, 6
    assert torch.equal(grid[0, :, 0:6, 1:5], tall[0])  # 4 wide, centred in 6: columns 1..4
    assert torch.equal(grid[0, :, 1:4, 7:13], wide[0])  # 3 high, centred in 6: rows 1..3
    assert torch.equal(grid[0, :, 7:13, 1:5], torch.zeros(3, 6, 4))
    assert (grid[0, :, 8:11, 7:13] == 1).all()
    mask = torch.ones(13, 13, dtype=torch.bool)
    mask[0:6, 1:5] = mask[1:4, 7:13] = mask[7:13, 1:5] = False
    assert (grid[0][:, mask] == 1).all()  # everything else is white


def test_too_small_sample_images_are_refused_before_training():
    with pytest.raises(ValueError, match=r"sample_images\[0\] is 8x16 px"):
        train(steps=1, sample_images=[torch.rand(1, 3, 8, 16)])


def test_callback_runs_every_log_every_steps_with_that_steps_losses(reference):
    result, _, calls, _ = reference
    assert [step for step, _, _ in calls] == [2, 4, 6]  # 6 // log_every calls
    for step, losses, _ in calls:
        for key in ("total", "content", "style", "tv", "seconds", "lr"):
            assert losses[key] == result.history[key][step - 1]


def test_resume_gives_the_same_weights_as_one_run(reference, tmp_path):
    """3 steps, then a resumed run to 6 (mid-epoch: 3 steps per epoch of 7 images), equals 6 steps at once."""
    result, _, _, _ = reference
    options = {**REFERENCE, "steps": 3}
    first = train(checkpoint_dir=tmp_path, **options)
    assert first.checkpoint_path == tmp_path / "step_000003.pth"
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    resumed = train(checkpoint_dir=tmp_path, resume=True, **REFERENCE)
    assert same_weights(resumed.net, result.net)
    for key in ("step", "total", "content", "style", "tv"):
        assert resumed.history[key] == result.history[key]
    assert resumed.checkpoint_path == tmp_path / "step_000006.pth"


def test_resume_falls_back_past_an_unreadable_checkpoint(reference, tmp_path):
    result, folder, _, _ = reference
    shutil.copytree(folder, tmp_path / "run")
    newest = tmp_path / "run" / "step_000006.pth"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut off, as by a disconnect during a copy
    with pytest.warns(RuntimeWarning, match="step_000006.pth cannot be read"):
        again = train(checkpoint_dir=tmp_path / "run", resume=True, **REFERENCE)
    assert (tmp_path / "run" / "step_000006.pth.unreadable").exists()
    assert same_weights(again.net, result.net)  # steps 5 and 6 redone from step 4 give the same weights


def test_resume_at_or_past_the_end_returns_the_checkpoint(reference):
    result, folder, _, _ = reference
    again = train(checkpoint_dir=folder, resume=True, **REFERENCE)
    assert same_weights(again.net, result.net)
    assert again.history["total"] == result.history["total"]
    assert again.checkpoint_path == folder / "step_000006.pth"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"image_size": 24}, "image_size"),
        ({"batch_size": 3}, "batch_size"),
        ({"style": style_image(seed=7)}, "style image differs"),
        ({"style_weight": 1.0}, "style_weight"),
    ],
)
def test_resume_with_different_settings_is_refused(reference, change, match):
    _, folder, _, _ = reference
    with pytest.raises(ValueError, match=match):
        train(checkpoint_dir=folder, resume=True, **{**REFERENCE, **change})


def test_resume_without_checkpoint_and_fresh_start_over_checkpoints(reference, tmp_path):
    _, folder, _, _ = reference
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        train(checkpoint_dir=tmp_path, resume=True, **REFERENCE)
    with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
        train(checkpoint_dir=folder, **REFERENCE)


# ---- learning -------------------------------------------------------------------------------------------------

def test_loss_goes_down(tmp_path):
    """15 steps on 4 images: the mean total loss of the last 3 steps is under half that of the first 3.

    ``resume="auto"`` on an empty folder starts afresh.
    """
    result = train(Tiny(n=4), steps=15, checkpoint_dir=tmp_path, resume="auto")
    total = result.history["total"]
    assert len(total) == 15
    assert np.mean(total[-3:]) < 0.5 * np.mean(total[:3])
    assert result.checkpoint_path == tmp_path / "step_000015.pth"


# ---- divergence -----------------------------------------------------------------------------------------------

class PoisonedLoss(PerceptualLoss):
    """The style loss turns NaN from the 4th evaluation on."""

    calls = 0

    def forward(self, image, content_targets=None):
        out = super().forward(image, content_targets)
        PoisonedLoss.calls += 1
        if PoisonedLoss.calls >= 4:
            out = dict(out, style=out["style"] * float("nan"), total=out["total"] * float("nan"))
        return out


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "PerceptualLoss", PoisonedLoss)
    PoisonedLoss.calls = 0
    with pytest.raises(TrainingDivergedError, match=r"step 4: style=nan, total=nan.*lower lr") as info:
        train(epochs=2, checkpoint_dir=tmp_path, checkpoint_every=2)  # 2 epochs x 3 steps
    error = info.value
    assert error.step == 4 and error.losses == ["style", "total"]
    assert error.checkpoint_path == tmp_path / "step_000002.pth"
    assert len(error.history["total"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth", "step_000002.pth"]
    state = torch.load(tmp_path / "latest.pth", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert load_transform_net(tmp_path / "step_000002.pth").metadata["step"] == 2


def test_a_diverged_run_resumes_from_its_last_good_checkpoint_with_a_lower_lr(tmp_path, monkeypatch):
    """The divergence message's advice works: the same call with resume=True and a lower lr continues from
    the last good checkpoint (lr may change on resume), and Adam really steps with the new lr."""
    monkeypatch.setattr(trainer, "PerceptualLoss", PoisonedLoss)
    PoisonedLoss.calls = 0
    with pytest.raises(TrainingDivergedError) as info:
        train(epochs=2, checkpoint_dir=tmp_path / "run", checkpoint_every=2)  # diverges at step 4
    message = str(info.value)
    assert f"the last good checkpoint is {tmp_path / 'run' / 'step_000002.pth'}" in message
    assert "resume=True and lr=0.0001 (now 0.001" in message and "--resume --lr 0.0001" in message
    assert "lr may differ from the checkpoint's" in message
    monkeypatch.undo()  # the loss is healthy again
    for name in ("high", "low"):
        shutil.copytree(tmp_path / "run", tmp_path / name)

    resumed = train(epochs=2, checkpoint_dir=tmp_path / "run", checkpoint_every=2, resume=True, lr=1e-4)
    assert resumed.history["step"] == [1, 2, 3, 4, 5, 6]
    assert resumed.history["lr"] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4]
    assert resumed.settings["lr"] == 1e-4 and all(math.isfinite(v) for v in resumed.history["total"])
    assert torch.load(resumed.checkpoint_path, weights_only=True)["settings"]["lr"] == 1e-4

    # Oracle: from the same checkpoint, Adam's step is lr * m_hat / (sqrt(v_hat) + eps) with the same
    # gradient and moments, so one step at lr 1e-4 moves every weight by a tenth of one at lr 1e-3.
    start = load_transform_net(tmp_path / "run" / "step_000002.pth").state_dict()
    high = train(steps=3, checkpoint_dir=tmp_path / "high", checkpoint_every=2, resume=True).net.state_dict()
    low = train(steps=3, checkpoint_dir=tmp_path / "low", checkpoint_every=2, resume=True, lr=1e-4).net.state_dict()
    for key, before in start.items():
        if before.is_floating_point():
            spacing = 2 * torch.finfo(torch.float32).eps * max(1.0, before.abs().max().item())  # float32 rounding
            torch.testing.assert_close(low[key].cpu() - before, 0.1 * (high[key].cpu() - before),
                                       rtol=1e-3, atol=spacing)
    assert any(not torch.equal(low[key].cpu(), start[key]) for key in start)  # the step did move the weights


def test_resume_uses_latest_when_every_step_checkpoint_is_unreadable(reference, tmp_path):
    result, folder, _, _ = reference
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    for name in ("step_000004.pth", "step_000006.pth"):  # both step files cut; latest.pth (step 6) intact
        (run / name).write_bytes((run / name).read_bytes()[:1000])
    with pytest.warns(RuntimeWarning) as caught:
        again = train(checkpoint_dir=run, resume=True, **{**REFERENCE, "steps": 7})
    messages = " | ".join(str(w.message) for w in caught)
    assert "step_000006.pth cannot be read" in messages and "step_000004.pth cannot be read" in messages
    assert f"resuming from {run / 'latest.pth'} (step 6)" in messages
    assert again.history["step"] == list(range(1, 8)) and again.checkpoint_path == run / "step_000007.pth"
    once = train(checkpoint_dir=tmp_path / "once", **{**REFERENCE, "steps": 7})  # exact resumption: 6 + 1 = 7
    assert same_weights(again.net, once.net)
    assert again.history["total"][:6] == result.history["total"]


def test_resume_with_no_readable_checkpoint_says_what_to_do(reference, tmp_path):
    _, folder, _, _ = reference
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    for name in ("step_000004.pth", "step_000006.pth", "latest.pth"):
        (run / name).write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        with pytest.raises(FileNotFoundError) as info:
            train(checkpoint_dir=run, resume=True, **REFERENCE)
    message = str(info.value)
    assert f"no checkpoint in {run} can be read" in message
    assert "latest.pth.unreadable, step_000004.pth.unreadable, step_000006.pth.unreadable" in message
    assert "copy an intact step_*.pth" in message and "another checkpoint_dir" in message
    assert sorted(p.name for p in run.glob("*.pth")) == []  # all set aside, none deleted
    assert len(list(run.glob("*.unreadable"))) == 3


# ---- quick mode, data handling -------------------------------------------------------------------------------

def test_quick_mode_caps_steps_and_sizes_and_uses_random_weights(monkeypatch, capsys, no_network):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    monkeypatch.setattr(config, "_announced", False)
    # items of another size (24 x 20) are resized and centre-cropped to the training size
    result = train(Tiny(n=4, height=24, width=20), steps=50, weights="imagenet", image_size=SIZE)
    assert len(result.history["total"]) == config.MAX_STEPS
    assert result.settings["quick"] is True and result.settings["weights"] == "random"
    assert "QUICK MODE" in capsys.readouterr().out
    monkeypatch.setattr(config, "_announced", True)
    capped = train(Tiny(n=2), steps=1, image_size=512, batch_size=1)  # 512 px becomes 64
    assert capped.settings["image_size"] == config.MAX_SIZE


def test_fit_resizes_the_shorter_side_and_crops_the_centre():
    wide = torch.rand(3, SIZE, 2 * SIZE)
    assert torch.equal(trainer._fit(wide, SIZE), wide[:, :, SIZE // 2:SIZE // 2 + SIZE])
    square = torch.rand(3, SIZE, SIZE)
    assert trainer._fit(square, SIZE) is square
    flat = torch.full((3, 40, 30), 0.25)
    torch.testing.assert_close(trainer._fit(flat, SIZE), torch.full((3, SIZE, SIZE), 0.25))


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_order(10, seed=3, epoch=1)
    assert sorted(a.tolist()) == list(range(10))
    torch.manual_seed(999)  # the global RNG plays no part
    assert torch.equal(epoch_order(10, seed=3, epoch=1), a)
    assert not torch.equal(epoch_order(10, seed=3, epoch=2), a)
    assert not torch.equal(epoch_order(10, seed=4, epoch=1), a)


# ---- argument checks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "options, match",
    [
        ({}, "exactly one of steps= and epochs="),
        ({"steps": 2, "epochs": 1}, "exactly one of steps= and epochs="),
        ({"steps": 0}, "steps=0"),
        ({"epochs": -1}, "epochs=-1"),
        ({"steps": 1, "batch_size": 0}, "batch_size=0"),
        ({"steps": 1, "image_size": 8}, "image_size=8"),
        ({"steps": 1, "style_size": 0}, "style_size=0"),
        ({"steps": 1, "content_weight": -1}, "content_weight"),
        ({"steps": 1, "style_weight": float("nan")}, "style_weight"),
        ({"steps": 1, "tv_weight": "a lot"}, "tv_weight"),
        ({"steps": 1, "lr": 0}, "lr"),
        ({"steps": 1, "upsample": "bilinear"}, "upsample"),
        ({"steps": 1, "weights": "vgg16"}, "weights"),
        ({"steps": 1, "amp": "float8"}, "amp"),
        ({"steps": 1, "checkpoint_every": 0}, "checkpoint_every"),
        ({"steps": 1, "keep_checkpoints": 0}, "keep_checkpoints"),
        ({"steps": 1, "sample_every": 0}, "sample_every"),
        ({"steps": 1, "log_every": 1.5}, "log_every"),
        ({"steps": 1, "resume": True}, "resume=True needs checkpoint_dir"),
        ({"steps": 1, "resume": "yes"}, "resume"),
        ({"steps": 1, "seed": -1}, "seed"),
        ({"steps": 1, "num_workers": -1}, "num_workers"),
        ({"steps": 1, "callback": "plot"}, "callback"),
        ({"steps": 1, "content_layers": ["conv9_9"]}, "content_layers"),
        ({"steps": 1, "batch_size": 8}, "fewer than batch_size=8"),
        ({"steps": 1, "sample_images": []}, "sample_images is empty"),
        ({"steps": 1, "device": "tpu"}, "device='tpu'"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(options, match):
    with pytest.raises(ValueError, match=match):
        train(**options)


def test_bad_dataset_items_are_explained():
    class Gray(Tiny):
        def __getitem__(self, i):
            return self.images[i][:1]

    with pytest.raises(ValueError, match=r"dataset\[0\] is \(1, 16, 16\)"):
        train(Gray(), steps=1)
    with pytest.raises(ValueError, match="dataset is a int"):
        train(5, steps=1)


# ---- mixed precision ------------------------------------------------------------------------------------------

def test_amp_picks_bfloat16_on_new_gpus_float16_on_old_ones_and_nothing_on_the_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer._amp_dtype(True, cpu) is None and trainer._amp_dtype("float16", cpu) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4
    assert trainer._amp_dtype(True, cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert trainer._amp_dtype(True, cuda) == torch.bfloat16
    assert trainer._amp_dtype("float16", cuda) == torch.float16
    assert trainer._amp_dtype(False, cuda) is None


def test_gram_matrix_is_float32_under_autocast_and_for_half_features():
    features = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 50
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gram_matrix(features)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, gram_matrix(features), rtol=0, atol=0)
    half = features.to(torch.float16)
    exact = gram_matrix(half.double())
    got = gram_matrix(half)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), exact, rtol=1e-6, atol=0)
    # why: the raw sums over the 256 positions exceed float16's largest value, 65504
    flat = half.float().reshape(2, 4, 256)
    assert torch.bmm(flat, flat.transpose(1, 2)).max() > torch.finfo(torch.float16).max


# ---- results and plots ----------------------------------------------------------------------------------------

def test_result_save_and_plot(reference, tmp_path):
    result, _, _, _ = reference
    path = result.save(tmp_path / "net.pth")
    assert same_weights(load_transform_net(path), result.net)
    labels = [line.get_label() for line in result.plot().axes[0].get_lines()]
    assert labels == ["total", "content", "style"]
    with_tv = dataclasses.replace(result, history=dict(result.history, tv=[0.5] * 6))
    assert [line.get_label() for line in with_tv.plot().axes[0].get_lines()][-1] == "tv"


def test_the_last_step_always_reaches_the_callback():
    calls = []
    train(steps=3, log_every=2, callback=lambda step, losses, samples: calls.append(step))
    assert calls == [2, 3]

