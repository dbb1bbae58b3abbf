"""train_adain_decoder: the loss against a written-out oracle, the schedule, exact resumption, checkpoints,
divergence, folders of images, quick mode."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from adain_nets import mean_std, reference_adain
from PIL import Image
from torch.utils.data import Dataset

from nstlib import adain_training as trainer
from nstlib.adain_model import AdaINModel
from nstlib.adain_training import HISTORY_KEYS, StyleStandins, adain_losses, stream_indices, train_adain_decoder
from nstlib.data.adain_weights import load_adain, random_decoder, random_encoder
from nstlib.training import TrainingDivergedError

SIZE = 16  # the smallest size AdaIN takes: relu4_1 is 2x2


class Tiny(Dataset):
    """``n`` smooth random images of ``SIZE + extra`` pixels (cropped to SIZE by the trainer)."""

    def __init__(self, n: int, seed: int, extra: int = 4):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, 5, 5, generator=g)
        self.images = F.interpolate(coarse, size=(SIZE + extra, SIZE + extra), mode="bilinear", align_corners=False)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


FAST = dict(batch_size=2, image_size=SIZE, encoder="random", lr=1e-3, progress=False)


def train(**options):
    kwargs = {**FAST, **options}
    return train_adain_decoder(kwargs.pop("content", Tiny(5, 0)), kwargs.pop("style", Tiny(3, 1)), **kwargs)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_losses_match_the_written_out_formulas():
    model = AdaINModel(random_encoder(), random_decoder(1))
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    losses = adain_losses(model, content, style)
    e = model.encoder  # pytorch-AdaIN's Net: enc_1 = [:4], enc_2 = [4:11], enc_3 = [11:18], enc_4 = [18:31]
    with torch.no_grad():
        def feats(x):
            out = []
            for a, b in ((0, 4), (4, 11), (11, 18), (18, 31)):
                x = e[a:b](x)
                out.append(x)
            return out
        t = reference_adain(e(content), e(style))
        g_t = model.decoder(t)
        mine, theirs = feats(g_t), feats(style)
        content_loss = ((mine[-1] - t) ** 2).mean()
        style_loss = sum(((mean_std(m)[0] - mean_std(s)[0]) ** 2).mean() + ((mean_std(m)[1] - mean_std(s)[1]) ** 2).mean()
                         for m, s in zip(mine, theirs))
    torch.testing.assert_close(losses["output"].detach(), g_t, rtol=0, atol=0)
    assert float(losses["content"].detach()) == pytest.approx(float(content_loss), rel=1e-5)
    assert float(losses["style"].detach()) == pytest.approx(float(style_loss), rel=1e-5)
    losses["style"].backward()  # gradients reach the decoder only
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())


def test_stream_indices_are_shuffled_passes_rebuilt_from_the_position():
    whole = stream_indices(5, seed=3, stream=0, start=0, count=20)
    for p in range(4):
        assert sorted(whole[5 * p:5 * p + 5]) == [0, 1, 2, 3, 4]
    assert stream_indices(5, 3, 0, 7, 9) == whole[7:16]  # any stretch, alone
    assert stream_indices(5, 3, 1, 0, 20) != whole  # the style stream is another order
    assert stream_indices(5, 4, 0, 0, 20) != whole


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """6 steps at once, checkpoints every 2 (content: 5 images, style: 3, batches of 2: passes straddle steps)."""
    folder = tmp_path_factory.mktemp("reference")
    calls = []
    result = train(steps=6, checkpoint_dir=folder, checkpoint_every=2, keep_checkpoints=2, log_every=2,
                   callback=lambda step, losses: calls.append((step, losses)))
    return result, folder, calls


def test_history_schedule_checkpoints_and_callback(reference):
    result, folder, calls = reference
    assert result.steps == 6 and result.history["step"] == [1, 2, 3, 4, 5, 6]
    assert set(result.history) == set(HISTORY_KEYS)
    for k, lr in enumerate(result.history["lr"]):
        assert lr == pytest.approx(1e-3 / (1 + 5e-5 * k), rel=1e-12)  # pytorch-AdaIN's decay, step k from 0
    for total, c, s in zip(result.history["total"], result.history["content"], result.history["style"]):
        assert total == pytest.approx(1.0 * c + 10.0 * s, rel=1e-6)
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pth", "step_000004.pth", "step_000006.pth"]
    state = torch.load(folder / "latest.pth", weights_only=True)
    assert state["step"] == 6 and state["kind"] == "nstlib.adain_train_checkpoint"
    assert same(load_adain(folder / "step_000006.pth", encoder="random").decoder, result.model.decoder)
    assert [step for step, _ in calls] == [2, 4, 6]
    assert calls[-1][1]["total"] == result.history["total"][-1]
    assert not result.model.training and result.checkpoint_path == folder / "step_000006.pth"


def test_resume_gives_exactly_the_same_decoder(reference, tmp_path):
    result, _, _ = reference
    first = train(steps=3, checkpoint_dir=tmp_path, checkpoint_every=2, keep_checkpoints=2, log_every=2)
    assert first.steps == 3
    torch.manual_seed(12345)  # a resumed run restores the random state: this must not matter
    resumed = train(steps=6, checkpoint_dir=tmp_path, checkpoint_every=2, keep_checkpoints=2, log_every=2,
                    resume=True)
    assert same(resumed.model.decoder, result.model.decoder)
    for key in ("step", "total", "content", "style", "lr"):
        assert resumed.history[key] == result.history[key]
    again = train(steps=6, checkpoint_dir=tmp_path, resume=True)  # at the end: nothing to do
    assert again.steps == 6 and same(again.model.decoder, result.model.decoder)


def test_resume_refusals_and_fallbacks(reference, tmp_path):
    _, folder, _ = reference
    with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
        train(steps=6, checkpoint_dir=folder)
    with pytest.raises(ValueError, match=r"style_weight: checkpoint 10\.0, now 5\.0"):
        train(steps=6, checkpoint_dir=folder, resume=True, style_weight=5.0)
    with pytest.raises(FileNotFoundError, match="holds no readable checkpoint"):
        train(steps=2, checkpoint_dir=tmp_path / "empty", resume=True)
    fresh = train(steps=1, checkpoint_dir=tmp_path / "auto", resume="auto")
    assert fresh.steps == 1
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "step_000006.pth").write_bytes(b"cut short")
    with pytest.warns(RuntimeWarning, match="step_000006.pth cannot be read") as caught:
        resumed = train(steps=6, checkpoint_dir=copy, checkpoint_every=2, keep_checkpoints=2, resume=True)
    assert caught[0].filename == __file__  # the warning points at the caller of train_adain_decoder
    assert resumed.history["step"] == [1, 2, 3, 4, 5, 6] and (copy / "step_000006.pth.unreadable").is_file()
    assert same(resumed.model.decoder, reference[0].model.decoder)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = trainer.adain_losses
    calls = {"n": 0}

    def poisoned(model, content, style):
        calls["n"] += 1
        out = real(model, content, style)
        return dict(out, style=out["style"] * float("nan")) if calls["n"] >= 3 else out

    monkeypatch.setattr(trainer, "adain_losses", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"step 3: style=nan, total=nan.*resume=True and lr=0\.0001") as info:
        train(steps=6, checkpoint_dir=tmp_path, checkpoint_every=2)
    error = info.value
    assert error.step == 3 and error.checkpoint_path == tmp_path / "step_000002.pth" and len(error.history["total"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth", "step_000002.pth"]
    state = torch.load(tmp_path / "latest.pth", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["decoder"].values())


def test_loss_goes_down_on_one_pair():
    result = train(content=Tiny(2, 5), style=Tiny(2, 6), steps=12, lr=3e-3)
    totals = result.history["total"]
    assert all(math.isfinite(v) for v in totals)
    assert sum(totals[-3:]) / 3 < 0.7 * sum(totals[:3]) / 3


def test_folders_of_images(tmp_path):
    for kind, count in (("photos", 3), ("paintings", 2)):
        (tmp_path / kind / "sub").mkdir(parents=True)
        for i in range(count):
            colour = (40 * i + 30, 200 - 50 * i, 90) if kind == "photos" else (200, 60 * i + 20, 180)
            Image.new("RGB", (30 + 3 * i, 22), colour).save(tmp_path / kind / "sub" / f"{i}.png")
    result = train(content=tmp_path / "photos", style=str(tmp_path / "paintings"), steps=2)
    assert result.settings["content_dataset"] == "ImageFolderDataset" and result.settings["content_length"] == 3
    assert result.settings["style_length"] == 2 and result.steps == 2
    path = result.save(tmp_path / "decoder.pth")
    assert same(load_adain(path, encoder="random").decoder, result.model.decoder)


def test_quick_mode_caps_and_uses_stand_ins(monkeypatch, capsys, cache_dir, no_network):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    result = train_adain_decoder("no/such/photos", "no/such/paintings", steps=100, batch_size=2, image_size=512,
                                 progress=False)
    out = capsys.readouterr().out
    assert out.count("QUICK MODE") == 1 and "vgg_normalised.pth is not cached; using a random stand-in" in out
    assert "content folder 'no/such/photos' does not exist" in out
    assert result.steps == 5 and result.settings["image_size"] == 64 and result.settings["quick"] is True
    assert result.settings["style_dataset"] == "StyleStandins"


def test_style_standins_are_deterministic_paintings():
    a, b = StyleStandins(4, 24), StyleStandins(4, 24)
    assert torch.equal(a[2], b[2]) and a[2].shape == (3, 24, 24) and not torch.equal(a[1], a[2])
    assert 0 <= float(a[0].min()) and float(a[0].max()) <= 1
    with pytest.raises(IndexError):
        a[4]


@pytest.mark.parametrize("options, match", [
    ({"steps": 0}, "steps=0 must be a positive"),
    ({"steps": 1, "image_size": 8}, "image_size=8 is too small"),
    ({"steps": 1, "lr": 0}, "lr=0 must be greater than 0"),
    ({"steps": 1, "style_weight": -1}, "style_weight=-1"),
    ({"steps": 1, "resume": True}, "resume=True needs checkpoint_dir"),
    ({"steps": 1, "resume": "yes"}, "resume='yes' must be"),
    ({"steps": 1, "callback": 3}, "callback=3"),
    ({"steps": 1, "content": 42}, "content is a int"),
])
def test_bad_arguments_are_named(options, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            train(**options)
