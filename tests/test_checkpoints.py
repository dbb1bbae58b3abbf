"""Checkpoints: the nstlib format, training checkpoints and pytorch/examples' state dicts.

Oracles: the saved network itself (outputs compared after a round trip), the file read back with
plain ``torch.load(weights_only=True)``, and pytorch/examples' own network (tests/nets.py)
with its attribute names, run on 0..255 pixels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from nets import ExamplesTransformerNet, examples_model, examples_state, make_net, oracle
from torch import nn

from nstlib import checkpoints
from nstlib.checkpoints import (
    CheckpointError,
    check_plain,
    convert_examples_state_dict,
    examples_key_map,
    load_transform_net,
    save_transform_net,
)
from nstlib.transform_net import TransformerNet


# ---- the nstlib format: save and load ------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    net = make_net(8, upsample="transpose", base=8, output="tanh", pixel_scale=2.0)
    path = save_transform_net(net, tmp_path / "sub" / "model.pth", style="wave", steps=10, weights=[1.0, 2.5],
                              extra={"lr": 1e-3, "note": None})
    assert path == tmp_path / "sub" / "model.pth"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "nstlib.transform_net" and raw["version"] == 1
    assert raw["config"] == net.config
    assert raw["metadata"] == {"style": "wave", "steps": 10, "weights": [1.0, 2.5], "extra": {"lr": 1e-3, "note": None}}
    loaded = load_transform_net(path)
    assert loaded.config == net.config and not loaded.training
    assert loaded.metadata["style"] == "wave"
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth"]  # no temporary file left


def test_save_refuses_non_plain_metadata_and_keeps_old_file(tmp_path, monkeypatch):
    net = TransformerNet(base=4)
    path = save_transform_net(net, tmp_path / "m.pth")
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"metadata\['where'\].*str\(\)"):
        save_transform_net(net, path, where=Path("/x"))
    with pytest.raises(TypeError, match="TransformerNet"):
        save_transform_net(nn.Linear(2, 2), tmp_path / "lin.pth")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_transform_net(net, path, note="new")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]


def test_load_training_checkpoint_with_model_key(tmp_path):
    net = make_net(9, base=8)
    state = {"module." + k: v for k, v in net.state_dict().items()}  # DataParallel prefix is removed
    checkpoint = {"config": net.config, "model": state, "optimizer": {"state": {}, "param_groups": []},
                  "rng": torch.get_rng_state(), "step": 12, "metadata": {"style": "candy"}}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    loaded = load_transform_net(tmp_path / "ckpt.pt")
    assert loaded.metadata == {"style": "candy"}
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def _good_file(tmp_path) -> Path:
    return save_transform_net(TransformerNet(base=4), tmp_path / "good.pth")


def test_load_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_transform_net(tmp_path / "nope.pth")
    folder = tmp_path / "run"
    folder.mkdir()
    save_transform_net(TransformerNet(base=4), folder / "last.pt")
    with pytest.raises(CheckpointError, match=r"is a folder.*last\.pt"):
        load_transform_net(folder)


def test_load_not_torch_and_truncated(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a model")
    with pytest.raises(CheckpointError, match=r"notes\.pth is not a readable PyTorch file.*expected"):
        load_transform_net(text)
    good = _good_file(tmp_path).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth.*truncated"):
        load_transform_net(cut)


def test_load_pickled_module_is_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_transform_net(tmp_path / "module.pth")


def test_load_other_model_and_missing_keys(tmp_path):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pth")
    with pytest.raises(CheckpointError, match=r"linear\.pth holds a dict with keys bias, weight; expected"):
        load_transform_net(tmp_path / "linear.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    del raw["state_dict"]["final.conv.bias"]
    raw["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing keys: final\.conv\.bias.*unexpected keys: extra\.weight"):
        load_transform_net(tmp_path / "broken.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    raw["config"]["upsample"] = "transpose"  # same names, transposed weight shapes
    torch.save(raw, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape\.pth: tensor shapes do not match"):
        load_transform_net(tmp_path / "shape.pth")


def test_load_bare_state_dict_and_bad_headers(tmp_path):
    torch.save(TransformerNet(base=4).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="without its config"):
        load_transform_net(tmp_path / "bare.pth")
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    torch.save({**raw, "version": 99}, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="version 99"):
        load_transform_net(tmp_path / "future.pth")
    torch.save({**raw, "format": "other"}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="format 'other'"):
        load_transform_net(tmp_path / "other.pth")
    torch.save({**raw, "config": {**raw["config"], "depth": 3}}, tmp_path / "cfg.pth")
    with pytest.raises(CheckpointError, match="unknown keys"):
        load_transform_net(tmp_path / "cfg.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_transform_net(tmp_path / "list.pth")
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


# ---- pytorch/examples' state dicts ---------------------------------------------------------------------

def test_key_map_covers_our_network_exactly():
    names = examples_key_map()
    ours = set(TransformerNet(upsample="nearest", base=4).state_dict())
    assert {f"{v}.{p}" for v in names.values() for p in ("weight", "bias")} == ours
    theirs = set(ExamplesTransformerNet(4).state_dict())
    assert {f"{k}.{p}" for k in names for p in ("weight", "bias")} == theirs


def test_converted_net_equals_examples_net_on_scaled_input():
    ref = examples_model(0)
    state = examples_state(ref)
    assert "res3.in2.running_var" in state and "in5.running_mean" in state
    converted = convert_examples_state_dict(state)
    assert not any("running" in k for k in converted)
    net = TransformerNet(upsample="nearest", pixel_scale=255)
    net.load_state_dict(converted)
    net.eval()
    for size in [(32, 48), (21, 30)]:  # a multiple of 4 and not
        x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            got = net(x)
        want = oracle(ref, x)
        assert float(want.std()) > 0.05  # a real signal, not a constant
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_convert_lists_unexpected_and_missing_keys():
    state = examples_state(examples_model(1, 4))
    del state["deconv3.conv2d.bias"]
    state["fc.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected keys \['fc\.weight'\].*missing keys \['deconv3\.conv2d\.bias'\]"):
        convert_examples_state_dict(state)
    with pytest.raises(ValueError, match="state dict"):
        convert_examples_state_dict([1, 2])


@pytest.mark.parametrize("legacy", [False, True])
def test_load_transform_net_reads_examples_files(tmp_path, legacy):
    ref = examples_model(2, 8)
    path = tmp_path / "candy.pth"
    # the real files were written by PyTorch 0.x: the legacy (non-zip) format must load too
    torch.save(examples_state(ref), path, _use_new_zipfile_serialization=not legacy)
    net = load_transform_net(path)
    assert net.config == {"upsample": "nearest", "base": 8, "output": "none", "pixel_scale": 255.0}
    x = torch.rand(1, 3, 24, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(ref, x), atol=2e-4, rtol=1e-4)




def test_key_map_by_hand():
    names = examples_key_map()
    # 3 downsampling convs + 3 norms, 5 residual blocks x (2 convs + 2 norms), 2 upsampling convs + 2 norms, 1 final conv
    assert len(names) == 6 + 20 + 4 + 1
    assert names["conv2.conv2d"] == "down.1.conv" and names["in3"] == "down.2.norm"
    assert names["res3.conv2.conv2d"] == "res.2.conv2.conv" and names["res5.in1"] == "res.4.conv1.norm"
    assert names["deconv2.conv2d"] == "up.1.conv" and names["in4"] == "up.0.norm"
    assert names["deconv3.conv2d"] == "final.conv"


# ---- more layouts and edge cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, key", [("_orig_mod.", "model"), ("", "state_dict")])
def test_training_checkpoint_of_a_compiled_model_or_with_a_state_dict_key(tmp_path, prefix, key):
    net = make_net(10, base=4, output="tanh")
    state = {prefix + k: v for k, v in net.state_dict().items()}  # torch.compile prefixes every name
    torch.save({"config": net.config, key: state, "metadata": ["not", "a", "dict"]}, tmp_path / "c.pt")
    loaded = load_transform_net(tmp_path / "c.pt")
    assert loaded.config == net.config
    assert loaded.metadata == {"metadata": ["not", "a", "dict"]}  # kept, under a key
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_a_prefix_on_only_some_keys_is_not_removed(tmp_path):
    net = TransformerNet(base=4)
    state = dict(net.state_dict())
    state["module.final.conv.bias"] = state.pop("final.conv.bias")
    torch.save({"config": net.config, "model": state}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: final\.conv\.bias.*unexpected keys: module\.final\.conv\.bias"):
        load_transform_net(tmp_path / "mixed.pt")


def test_saved_file_is_plain_data_on_the_cpu(tmp_path):
    net = make_net(11, base=4)
    path = save_transform_net(net, tmp_path / "m.pth", note="x")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "version", "config", "state_dict", "metadata"}
    assert raw["state_dict"].keys() == net.state_dict().keys()
    for name, tensor in net.state_dict().items():
        assert raw["state_dict"][name].device.type == "cpu" and torch.equal(raw["state_dict"][name], tensor)
    with pytest.raises(IsADirectoryError, match="model.pth"):
        save_transform_net(net, tmp_path)


def test_check_plain_accepts_plain_data_and_names_the_rest():
    check_plain({"a": [1, 2.5, "x", None, True, (torch.zeros(1),)], "b": {"c": {}}}, "metadata")
    with pytest.raises(TypeError, match=r"metadata\['a'\]\[1\] is a set"):
        check_plain({"a": [1, {2}]}, "metadata")
    with pytest.raises(TypeError, match=r"metadata\['b'\] has a key 3 of type int"):
        check_plain({"b": {3: "x"}}, "metadata")
    with pytest.raises(TypeError, match=r"PosixPath|WindowsPath"):
        check_plain(Path("x"), "where")


def test_version_zero_and_a_config_that_is_not_a_dict(tmp_path):
    raw = torch.load(_good_file(tmp_path), weights_only=True)
    torch.save({**raw, "version": 0}, tmp_path / "zero.pth")
    with pytest.raises(CheckpointError, match="version 0"):
        load_transform_net(tmp_path / "zero.pth")
    torch.save({**raw, "config": "nearest"}, tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="'config' is a str"):
        load_transform_net(tmp_path / "text.pth")
    torch.save({**raw, "config": {"base": -1}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="does not describe a TransformerNet"):
        load_transform_net(tmp_path / "bad.pth")


# ---- export: a course network as a pytorch/examples state dict -------------------------------------------------
# Oracle: pytorch/examples' own network (tests/nets.py) loads the export with strict=True and, on 0..255 pixels,
# returns 255 times what the course network returns on [0, 1] pixels (sizes that are multiples of 4: theirs
# pads nothing).

@pytest.mark.parametrize("pixel_scale", [1.0, 2.0, 255.0])
def test_export_loads_strictly_into_examples_net_and_matches_on_0_255(pixel_scale):
    net = make_net(11, base=8, pixel_scale=pixel_scale)
    state = checkpoints.to_examples_state_dict(net, any_width=True)
    theirs = ExamplesTransformerNet(8)
    theirs.load_state_dict(state, strict=True)
    theirs.eval()
    x = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = 255 * net(x)
        got = theirs(255 * x)
    assert float(want.std()) > 1  # a real signal, far above the tolerance
    torch.testing.assert_close(got, want, rtol=1e-4, atol=255 * 2e-4)
    # the input scale is folded into the first convolution and the output scale into the last, nothing else
    ours = net.state_dict()
    s = 255 / pixel_scale
    torch.testing.assert_close(state["conv1.conv2d.weight"], ours["down.0.conv.weight"] / s)
    torch.testing.assert_close(state["deconv3.conv2d.bias"], ours["final.conv.bias"] * s)
    assert torch.equal(state["conv1.conv2d.bias"], ours["down.0.conv.bias"])
    assert torch.equal(state["res2.in1.weight"], ours["res.1.conv1.norm.weight"])


def test_saved_export_at_their_width_loads_with_weights_only_and_round_trips(tmp_path):
    net = make_net(12)  # base 32: their class as it is
    path = checkpoints.save_examples_format(net, tmp_path / "out" / "mine.pth")
    assert path == tmp_path / "out" / "mine.pth" and sorted(p.name for p in path.parent.iterdir()) == ["mine.pth"]
    raw = torch.load(path, weights_only=True)
    theirs = ExamplesTransformerNet()
    theirs.load_state_dict(raw, strict=True)
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(255 * x), 255 * net(x), rtol=1e-4, atol=255 * 2e-4)
    # read back by nstlib as a pytorch/examples model: the same function on [0, 1] images, any size
    back = load_transform_net(path)
    assert back.pixel_scale == 255
    y = torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(back(y), net(y), rtol=1e-4, atol=2e-4)


def test_examples_model_round_trips_unchanged():
    ref = examples_model(6, 8)
    net = TransformerNet(upsample="nearest", base=8, pixel_scale=255)
    net.load_state_dict(convert_examples_state_dict(examples_state(ref)))
    exported = checkpoints.to_examples_state_dict(net, any_width=True)
    assert exported.keys() == ref.state_dict().keys()
    for key, value in ref.state_dict().items():
        assert torch.equal(exported[key], value), key  # s = 255: every tensor is copied as it is


@pytest.mark.parametrize("kwargs, words", [
    ({"upsample": "transpose", "base": 32}, "upsample='transpose'"),
    ({"output": "tanh", "base": 32}, "output='tanh'"),
    ({"base": 8}, "base=8 (theirs is 32; pass any_width=True"),
])
def test_export_refuses_networks_of_another_architecture(tmp_path, kwargs, words):
    net = TransformerNet(**kwargs)
    with pytest.raises(ValueError, match=re.escape(words)):
        checkpoints.save_examples_format(net, tmp_path / "x.pth")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="TransformerNet"):
        checkpoints.to_examples_state_dict(nn.Conv2d(3, 3, 1))
    with pytest.raises(IsADirectoryError, match="style.pth"):
        checkpoints.save_examples_format(TransformerNet(), tmp_path)


def test_export_refuses_a_multi_style_network():
    net = TransformerNet(num_styles=2)
    with pytest.raises(ValueError, match="num_styles=2"):
        checkpoints.to_examples_state_dict(net)


# ---- training checkpoints: the newest readable one ------------------------------------------------------

OTHER_KIND = "test.other_trainer_checkpoint"


def _other_reader(path: Path) -> dict:
    return checkpoints.read_train_checkpoint(path, kind=OTHER_KIND, trainer="a test trainer")


def _checkpoint_folder(folder: Path, cut: tuple[int, ...] = ()) -> Path:
    """step_000002.pth, step_000004.pth and latest.pth (step 4) of another trainer; the steps in ``cut`` cut short."""
    for step in (2, 4):
        checkpoints.write_train_checkpoint(folder, step, {"kind": OTHER_KIND, "version": 1, "step": step}, keep=3)
    for step in cut:
        checkpoints.step_file(folder, step).write_bytes(b"cut short")
    return folder


def test_latest_train_checkpoint_reads_with_the_reader_it_is_given(tmp_path):
    """``read=`` decides which files are checkpoints: the default reader (train_transform_net's kind) sets
    another trainer's files aside, the trainer's own reader finds the newest, without a warning."""
    import warnings

    folder = _checkpoint_folder(tmp_path / "ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path, state = checkpoints.latest_train_checkpoint(folder, read=_other_reader)
    assert path == folder / "step_000004.pth" and state == {"kind": OTHER_KIND, "version": 1, "step": 4}
    with pytest.warns(RuntimeWarning, match="is not a training checkpoint of nstlib.train_transform_net") as caught:
        assert checkpoints.latest_train_checkpoint(folder) is None
    assert len(caught) == 3 and sorted(p.name for p in folder.iterdir()) == [
        "latest.pth.unreadable", "step_000002.pth.unreadable", "step_000004.pth.unreadable"]


def test_latest_train_checkpoint_falls_back_and_warns_at_the_caller(tmp_path):
    """A cut newest file: set aside, the previous one used (the warning points at this file: stacklevel=2).
    Every step file cut: latest.pth, with a warning saying so unless ``warn_latest=False``."""
    folder = _checkpoint_folder(tmp_path / "newest_cut", cut=(4,))
    with pytest.warns(RuntimeWarning, match="step_000004.pth cannot be read") as caught:
        path, state = checkpoints.latest_train_checkpoint(folder, read=_other_reader)
    assert path.name == "step_000002.pth" and state["step"] == 2 and caught[0].filename == __file__
    assert (folder / "step_000004.pth.unreadable").is_file()
    for warn_latest in (True, False):
        folder = _checkpoint_folder(tmp_path / f"all_cut_{warn_latest}", cut=(2, 4))
        with pytest.warns(RuntimeWarning) as caught:
            path, state = checkpoints.latest_train_checkpoint(folder, read=_other_reader, warn_latest=warn_latest)
        assert path.name == "latest.pth" and state["step"] == 4
        messages = [str(w.message) for w in caught]
        assert sum("cannot be read" in m for m in messages) == 2
        assert any("resuming from" in m for m in messages) == warn_latest
