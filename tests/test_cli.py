"""The ``nstlib`` command line, run as a student runs it.

A few commands run as real subprocesses (``nstlib`` console script, ``python -m nstlib``): each
imports torch, so most cases call :func:`nstlib.cli.main` in-process, which parses and runs
exactly the same code and returns the exit code instead of exiting. Outputs are checked against
the library called directly (the oracle), pixel for pixel.

Downloads: the real manifest's SHA-256 values belong to files the tests do not have, and a
subprocess cannot be monkeypatched. So a sample download is tested in-process, with a
manifest entry added for a file the test writes, served by the local HTTP server through
``NSTLIB_MIRROR=http://127.0.0.1:PORT``; the real samples are tested in quick mode, which
writes synthetic stand-ins without touching the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nstlib
from nstlib import cli, config
from nstlib.data import samples
from nstlib.course import batch
from nstlib.images import load_image, to_uint8
from nstlib.data.pretrained import load_pretrained
from nstlib.gatys import stylize
from nstlib.training import train_transform_net
from nstlib import TransformerNet, load_transform_net, save_transform_net, stylize_image

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 48, 32          # the content image the tests write
SIZE = 32                       # --size: the output is 32 x round(32 * 32 / 48) = 32 x 21
EXPECTED = (32, 21)             # (width, height), worked out by hand




@pytest.fixture
def env(cache_dir, tmp_path, monkeypatch):
    """A private cache and torch hub folder, quick mode off; returns the tmp folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture
def quick_env(env, monkeypatch):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    return env


def _write(path: Path, width: int, height: int, seed: int) -> Path:
    """A smooth random RGB image (PNG), so that stylisation has structure to work on."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, height // 8), max(2, width // 8), 3))
    image = Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    image.save(path)
    return path


@pytest.fixture
def images(tmp_path):
    """``(content, style)`` PNG paths: content 48x32, style 40x40."""
    return _write(tmp_path / "content.png", WIDTH, HEIGHT, 0), _write(tmp_path / "style.png", 40, 40, 1)


@pytest.fixture
def checkpoint(tmp_path):
    """A seeded random TransformerNet saved with save_transform_net; returns ``(path, net)``."""
    torch.manual_seed(3)
    net = TransformerNet().eval()
    return save_transform_net(net, tmp_path / "model.pth", note="test"), net


def start_cli(*args: str, cache: Path, script: bool = False) -> subprocess.Popen:
    """Start the real command (console script or ``python -m nstlib``) with a private cache, quick mode off."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NSTLIB_")}
    environment.update(NSTLIB_CACHE=str(cache), OMP_NUM_THREADS="1", TORCH_HOME=str(cache / "torch"),
                       PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if script:
        command = Path(sys.executable).with_name("nstlib")
        assert command.is_file(), f"{command} is missing: install the project with pip install -e ."
        argv = [str(command), *args]
    else:
        argv = [sys.executable, "-m", "nstlib", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                            cwd=cache.parent)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


# -- real subprocesses -------------------------------------------------------------------------


def test_real_commands_console_script_and_python_m(images, checkpoint, env, tmp_path):
    """Two real processes, run side by side (each imports torch): a fast model through the ``nstlib``
    console script, and a missing content file through ``python -m nstlib``."""
    content, style = images
    path, net = checkpoint
    out, missing = tmp_path / "fast.png", tmp_path / "no_such_photo.jpg"
    fast = start_cli("stylize", str(content), "--model", str(path), "-o", str(out), "--size", str(SIZE),
                     cache=tmp_path / "cache", script=True)
    bad = start_cli("stylize", str(missing), str(style), "-o", str(tmp_path / "bad.jpg"), cache=tmp_path / "cache")
    fast_out, fast_err = fast.communicate(timeout=300)
    bad_out, bad_err = bad.communicate(timeout=300)

    assert fast.returncode == 0, fast_err
    assert fast_out.startswith(f"nstlib: wrote {out} (32x21, fast model {path}, ") and fast_out.endswith(" s\n")
    expected = to_uint8(stylize_image(net, load_image(content, SIZE))).astype(int)
    got = pixels(out)
    assert got.shape == (EXPECTED[1], EXPECTED[0], 3)
    assert np.abs(got - expected).max() <= 1  # another process: allow one level of rounding

    assert bad.returncode == 2
    lines = bad_err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstlib: error: ") and str(missing) in lines[0], bad_err
    assert "Traceback" not in bad_err and bad_out == ""
    assert not (tmp_path / "bad.jpg").exists()


# -- help ----------------------------------------------------------------------------------------

HELP = {
    "stylize": ["--model", "--size", "--steps", "--content-weight", "--style-weight", "--tv-weight", "--layers",
                "--content-layers", "--style-layers", "--optimizer", "--lr", "--init", "--preserve-color",
                "--scales", "--style-blend", "--seed", "--device", "--weights", "--quiet", "--force", "--output",
                "--style-size", "--pooling", "--no-rescale-loss", "--save-every", "--print-every", "--backend",
                "--blend", "--no-audio", "--adain", "--adain-encoder", "--alpha"],
    "train": ["--data", "--steps", "--epochs", "--batch-size", "--image-size", "--content-weight", "--style-weight",
              "--tv-weight", "--lr", "--checkpoint-dir", "--checkpoint-every", "--sample-every", "--resume", "--seed",
              "--device", "--output"],
    "train-adain": ["STYLES", "--data", "--steps", "--batch-size", "--image-size", "--content-weight", "--style-weight",
                    "--lr", "--lr-decay", "--encoder", "--checkpoint-dir", "--checkpoint-every", "--keep-checkpoints",
                    "--log-every", "--resume", "--seed", "--num-workers", "--device", "--quiet", "--force", "--output"],
    "download": ["--n", "samples", "pretrained", "vgg19", "labelme", "coco-val2017", "coco-train2014",
                 "labelme-12-50k", "wave"],
    "batch": ["--workers", "--output", "--force"],
    "info": ["--debug"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_every_subcommand_has_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: nstlib {command}")
    for option in HELP[command]:
        assert option in text, option


def test_top_level_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(command in text for command in HELP) and "Exit codes" in text
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nstlib {nstlib.__version__}"
    assert cli.main([]) == 2  # a command is required
    assert "required" in capsys.readouterr().err


# -- bad input: exit code 2, one line naming the problem ---------------------------------------

BAD = [
    (["stylize", "{tmp}/missing.png", "{style}", "-o", "{out}"], "missing.png"),
    (["stylize", "not_a_sample", "{style}", "-o", "{out}"], "not_a_sample"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--size", "0"], "--size: 0 must be a positive"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--steps", "-1"], "--steps: -1 must be a positive"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--scales", "256,x"], "--scales"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--style-weight", "-3"], "--style-weight"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/out.xyz"], "'.xyz' is not one of"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--device", "tpu"], "tpu"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--content-layers", "conv9_9"], "conv9_9"),
    (["stylize", "{content}", "-o", "{out}"], "needs a STYLE"),
    (["stylize", "{content}", "--model", "{tmp}/missing.pth", "-o", "{out}"], "missing.pth: no such file"),
    (["stylize", "{content}", "--model", "{tmp}", "-o", "{out}"], "is a folder"),
    (["stylize", "{content}", "{style}", "--model", "candy", "-o", "{out}"], "drop the STYLE"),
    (["stylize", "{content}", "--model", "candy", "--steps", "5", "-o", "{out}"], "--steps only apply to Gatys"),
    (["stylize", "{content}", "--model", "candy", "--seed", "0", "-o", "{out}"], "--seed only apply to Gatys"),
    (["stylize", "{content}", "--model", "candy", "--no-rescale-loss", "-o", "{out}"],
     "--no-rescale-loss only apply to Gatys"),
    (["stylize", "{content}", "--model", "candy", "--preserve-color", "-o", "{out}"],
     "--preserve-color only apply to STYLE images (Gatys optimisation or --adain), not to --model"),
    (["stylize", "{content}", "{style}", "--adain", "--model", "candy", "-o", "{out}"], "--adain and --model candy"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "--steps", "5"],
     "--steps only apply to Gatys optimisation, not to --adain"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--scales", "16,32", "--adain"],
     "--scales only apply to Gatys optimisation, not to --adain"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "--backend", "onnx"],
     "--backend onnx chooses how a fast model (--model) runs, not --adain"),
    (["stylize", "{content}", "-o", "{out}", "--adain"], "--adain needs a STYLE image after CONTENT"),
    (["stylize", "--adain", "{content}", "{style}", "-o", "{out}"], "write --adain after CONTENT and STYLE"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "{tmp}/missing_decoder.pth"],
     "missing_decoder.pth: no such file"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "{tmp}"], ": is a folder: give a decoder .pth"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--alpha", "0.5"], "--alpha 0.5 weighs AdaIN's style against "
     "the content: it needs --adain"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "--alpha", "1.5"], "--alpha: 1.5 must be from 0"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain-encoder", "random"],
     "--adain-encoder random chooses AdaIN's encoder: it needs --adain"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--adain", "--adain-encoder", "{tmp}/no_vgg.pth"],
     "no_vgg.pth: no such file (the current folder is"),
    (["stylize", "{content}", "{style}", "{style}", "-o", "{out}", "--adain", "--style-blend", "1,2,3"],
     "--style-blend has 3 weight(s) for 2 STYLE image(s)"),
    (["train", "{style}", "--data", "{tmp}/no_photos", "--steps", "1", "-o", "{tmp}/m.pth"], "no_photos"),
    (["train", "{style}", "--data", "synthetic", "-o", "{tmp}/m.pth"], "--steps --epochs is required"),
    (["train", "{style}", "--data", "synthetic", "--steps", "1", "--epochs", "1", "-o", "{tmp}/m.pth"],
     "not allowed with"),
    (["train", "{style}", "--data", "synthetic", "--steps", "1", "--resume", "-o", "{tmp}/m.pth"],
     "--resume needs --checkpoint-dir"),
    (["train", "{style}", "--data", "synthetic", "--steps", "1", "--image-size", "8", "-o", "{tmp}/m.pth"],
     "image_size=8 is too small"),
    (["train", "{style}", "--data", "synthetic", "--steps", "1", "-o", "{tmp}/m.txt"], "'.txt' is not one of .pth .pt"),
    (["train", "{style}", "--data", "synthetic", "--steps", "1", "-o", "{style}/m.pth"], "is a file, not a folder"),
    (["stylize", "{content}", "{style}", "-o", "{content}/sub/out.jpg"], "is a file, not a folder"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--size", "4097"], "--size: 4097 is larger than 4096"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--scales", "256,5000"], "--scales: 5000 is larger than 4096"),
    (["stylize", "{content}", "{style}", "-o", "{out}", "--style-size", "9999"], "--style-size: 9999 is larger"),
    (["download", "nope", "wave"], "unknown download name(s): nope"),
    (["download", "wave", "--n", "5"], "--n applies to labelme only"),
    (["batch", "{tmp}/missing.yaml"], "missing.yaml does not exist"),
    (["batch", "{tmp}/g.yaml", "--workers", "0"], "--workers: 0 must be"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:1] + a[-2:]) + f" [{i}]" for i, (a, _) in
                                                    enumerate(BAD)])
def test_bad_input_exits_2_and_names_the_problem(argv, message, images, env, tmp_path, capsys):
    content, style = images
    fill = dict(tmp=tmp_path, content=content, style=style, out=tmp_path / "out.jpg")
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and message in last, err
    if last.startswith("nstlib: error:"):  # our own errors are exactly one line
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.jpg").exists() and not (tmp_path / "m.pth").exists()


def test_unknown_download_name_lists_the_valid_names(env, capsys):
    assert cli.main(["download", "mosaik"]) == 2
    err = capsys.readouterr().err
    for name in [*cli.DOWNLOAD_GROUPS, *samples.sample_names()]:
        assert name in err


def test_bad_environment_is_a_usage_error(env, monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_QUICK, "maybe")
    assert cli.main(["info"]) == 2
    assert "NSTLIB_QUICK='maybe'" in capsys.readouterr().err


def test_debug_shows_the_traceback_before_or_after_the_command(images, env, tmp_path, capsys):
    _, style = images
    for argv in (["--debug", "stylize", "gone.png", str(style), "-o", str(tmp_path / "o.png")],
                 ["stylize", "gone.png", str(style), "-o", str(tmp_path / "o.png"), "--debug"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "ImageError" in err
        assert err.strip().splitlines()[-1].startswith("nstlib: error: 'gone.png'")


# -- stylize -----------------------------------------------------------------------------------


def test_gatys_run_matches_the_library(images, quick_env, tmp_path, capsys):
    content, style = images
    out = tmp_path / "gatys.png"
    argv = ["stylize", str(content), str(style), "-o", str(out), "--size", str(SIZE), "--steps", "2",
            "--optimizer", "adam", "--quiet"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "QUICK MODE" in text  # never mistaken for a real result
    assert f"wrote {out} (32x21, Gatys, 2 steps, total loss " in text
    oracle = stylize(str(content), str(style), steps=2, optimizer="adam", size=SIZE, seed=0, device="cpu",
                     progress=False)
    assert np.array_equal(pixels(out), to_uint8(oracle.image).astype(int))


def test_existing_output_needs_force(images, checkpoint, env, tmp_path, capsys):
    content, _ = images
    path, net = checkpoint
    out = tmp_path / "fast.png"
    argv = ["stylize", str(content), "--model", str(path), "-o", str(out), "--size", str(SIZE)]
    assert cli.main(argv) == 0
    first = out.read_bytes()
    out.write_bytes(b"keep me")
    assert cli.main(argv) == 2
    assert "already exists: pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"  # refused before any work
    assert cli.main(argv + ["--force"]) == 0
    assert out.read_bytes() == first  # same model, same input: the same file


def test_pretrained_name_in_quick_mode_uses_the_announced_stand_in(images, quick_env, tmp_path, capsys):
    content, _ = images
    out = tmp_path / "candy.png"
    assert cli.main(["stylize", str(content), "--model", "candy", "-o", str(out), "--size", str(SIZE)]) == 0
    text = capsys.readouterr().out
    assert "QUICK MODE" in text and "stand-in" in text and f"wrote {out}" in text
    expected = to_uint8(stylize_image(load_pretrained("candy"), load_image(content, SIZE)))
    assert np.array_equal(pixels(out), expected.astype(int))


def test_gatys_options_reach_stylize(images, env, tmp_path, monkeypatch, capsys):
    """Every option is passed on under stylize()'s name; the oracle is the argument list written out."""
    content, style = images
    seen = {}

    def fake(content_arg, style_arg, **kwargs):
        seen.update(kwargs, content=content_arg, style=style_arg)
        history = {key: [2.0, 1.0] for key in ("total", "content", "style", "tv", "seconds")}
        return nstlib.StylizeResult(image=torch.full((1, 3, 21, 32), 0.5), history=history)

    monkeypatch.setattr(sys.modules["nstlib.gatys"], "stylize", fake)
    argv = ["stylize", str(content), str(style), str(style), "-o", str(tmp_path / "o.jpg"), "--scales", "16,32",
            "--steps", "3,2", "--content-weight", "2", "--style-weight", "1e5", "--tv-weight", "0.5",
            "--layers", "seed", "--style-layers", "relu1_1,conv_3", "--optimizer", "adam", "--lr", "0.1",
            "--init", "noise", "--preserve-color", "--style-blend", "3,1", "--seed", "7", "--weights", "random",
            "--pooling", "avg", "--style-size", "24", "--device", "cpu", "--quiet", "--no-rescale-loss"]
    assert cli.main(argv) == 0
    assert seen["content"] == str(content) and seen["style"] == [str(style), str(style)]
    assert seen["scales"] == [16, 32] and seen["steps"] == [3, 2] and seen["size"] is None
    assert (seen["content_weight"], seen["style_weight"], seen["tv_weight"]) == (2.0, 1e5, 0.5)
    assert seen["content_layers"] == ["conv2_2"]  # the seed preset: the tutorial's conv_4
    assert seen["style_layers"] == ["relu1_1", "conv2_1"]  # the tutorial's conv_3 is conv2_1
    assert (seen["optimizer"], seen["lr"], seen["init"], seen["preserve_color"]) == ("adam", 0.1, "noise", True)
    assert seen["style_blend_weights"] == [3.0, 1.0] and seen["seed"] == 7 and seen["weights"] is None
    assert (seen["pooling"], seen["style_size"], str(seen["device"]), seen["progress"]) == ("avg", 24, "cpu", False)
    assert seen["rescale_loss"] is False
    assert pixels_jpeg_size(tmp_path / "o.jpg") == (32, 21)
    assert "2 steps, total loss 1" in capsys.readouterr().out


def test_gatys_defaults_reach_stylize(images, env, tmp_path, monkeypatch):
    """Without options a file is stylised at 512 px (the library's rule for files) with the loss rescaled."""
    content, style = images
    seen = {}

    def fake(content_arg, style_arg, **kwargs):
        seen.update(kwargs)
        history = {key: [1.0] for key in ("total", "content", "style", "tv", "seconds")}
        return nstlib.StylizeResult(image=torch.full((1, 3, 21, 32), 0.5), history=history)

    monkeypatch.setattr(sys.modules["nstlib.gatys"], "stylize", fake)
    assert cli.main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--quiet"]) == 0
    assert seen["size"] == 512 == sys.modules["nstlib.gatys"].FILE_SIZE and seen["scales"] is None
    assert seen["rescale_loss"] is True and seen["steps"] == 300


def pixels_jpeg_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "JPEG"
        return image.size


# -- train -------------------------------------------------------------------------------------


def test_train_writes_the_model_train_transform_net_makes(images, env, tmp_path, capsys):
    _, style = images
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        _write(data / f"p{i}.png", 24 + 4 * i, 20, 10 + i)
    model, ckpt = tmp_path / "style.pth", tmp_path / "ckpt"
    argv = ["train", str(style), "--data", str(data), "--steps", "2", "--batch-size", "2", "--image-size", "16",
            "--weights", "random", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "1", "--seed", "5",
            "--device", "cpu", "--quiet", "-o", str(model)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {model} (2 steps on 4 images" in out and f"checkpoints in {ckpt}" in out
    net = load_transform_net(model)
    assert net.metadata["step"] == 2 and net.metadata["trainer"] == "nstlib.train_transform_net"
    assert sorted(p.name for p in ckpt.glob("step_*.pth")) == ["step_000001.pth", "step_000002.pth"]
    oracle = train_transform_net(str(style), str(data), steps=2, batch_size=2, image_size=16, weights=None,
                                 checkpoint_dir=None, seed=5, device="cpu", progress=False).net
    for key, value in oracle.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value.cpu(), rtol=0, atol=1e-6)


def test_diverged_training_exits_1_naming_the_step(images, env, tmp_path, capsys):
    _, style = images
    argv = ["train", str(style), "--data", "synthetic", "--max-images", "2", "--steps", "3", "--batch-size", "1",
            "--image-size", "16", "--weights", "random", "--lr", "1e30", "--quiet", "-o", str(tmp_path / "m.pth")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nstlib: error: training diverged at step")
    assert not (tmp_path / "m.pth").exists()


# -- train-adain -------------------------------------------------------------------------------

ADAIN_ARGS = ["--steps", "4", "--batch-size", "2", "--image-size", "16", "--lr", "1e-3", "--seed", "3", "--quiet"]
"""Small runs: 4 steps of 2 pairs at 16 px (AdaIN's smallest size), a learning rate that moves the weights."""

ADAIN_LINE = re.compile(r"^step (\d+): total (\S+), content (\S+), style (\S+), lr (\S+) \((\S+) s\)$")


def _image_folder(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        _write(folder / f"{i}.png", 20 + 4 * i, 18 + 2 * i, seed + i)
    return folder


@pytest.fixture
def adain_folders(tmp_path):
    """``(photos, paintings)``: 3 photos, 2 paintings in a sub-folder (found recursively)."""
    return _image_folder(tmp_path / "photos", 3, 20), _image_folder(tmp_path / "paintings" / "oils", 2, 30).parent


def _decoder_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_train_adain_writes_the_decoder_train_adain_decoder_makes(adain_folders, quick_env, no_network, tmp_path,
                                                                   capsys):
    """The oracle: nstlib.train_adain_decoder called with the same arguments (quick mode: the encoder is the
    announced random stand-in in both). The file is pytorch-AdaIN's decoder layout, read by nstlib.load_adain."""
    from nstlib.adain_training import train_adain_decoder

    photos, paintings = adain_folders
    out = tmp_path / "decoder.pth"
    argv = ["train-adain", str(paintings), "--data", str(photos), *ADAIN_ARGS, "--log-every", "2", "-o", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"nstlib: wrote {out} (AdaIN decoder, 4 steps on 3 photos and 2 style images, final loss " in printed
    assert "vgg_normalised.pth is not cached; using a random stand-in" in printed
    oracle = train_adain_decoder(str(photos), str(paintings), steps=4, batch_size=2, image_size=16, lr=1e-3, seed=3,
                                 progress=False)
    assert _same_state(_decoder_state(out), oracle.model.decoder.state_dict())
    assert _same_state(nstlib.load_adain(out, encoder="random").decoder.state_dict(), oracle.model.decoder.state_dict())
    logged = {int(m.group(1)): [float(v) for v in m.groups()[1:5]]
              for m in map(ADAIN_LINE.match, printed.splitlines()) if m}
    assert sorted(logged) == [2, 4]
    for step, values in logged.items():
        index = oracle.history["step"].index(step)
        expected = [oracle.history[key][index] for key in ("total", "content", "style", "lr")]
        assert values == pytest.approx(expected, rel=1e-5), step  # printed with 6 significant digits


def test_train_adain_run_again_after_an_interruption_continues_exactly(adain_folders, quick_env, tmp_path,
                                                                        monkeypatch, capsys):
    """Ctrl-C during step 3, then the same command again: the decoder equals an uninterrupted run's, bit for bit
    (the oracle), and the first command wrote no decoder file."""
    from nstlib import adain_training

    photos, paintings = adain_folders

    def run(name: str) -> int:
        return cli.main(["train-adain", str(paintings), "--data", str(photos), *ADAIN_ARGS, "--checkpoint-every", "1",
                         "--checkpoint-dir", str(tmp_path / f"{name}_ckpt"), "--resume",
                         "-o", str(tmp_path / f"{name}.pth")])

    assert run("whole") == 0
    real, calls = adain_training.adain_losses, []

    def interrupted(*args):
        calls.append(len(calls) + 1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C (or a lost Colab session) does in the middle of step 3
        return real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(adain_training, "adain_losses", interrupted)
        assert run("again") == 130
    assert "nstlib: interrupted" in capsys.readouterr().err and not (tmp_path / "again.pth").exists()
    assert sorted(p.name for p in (tmp_path / "again_ckpt").glob("step_*.pth")) == ["step_000001.pth", "step_000002.pth"]
    torch.manual_seed(12345)  # the resumed run restores the random state of its checkpoint: this must not matter
    assert run("again") == 0
    assert _same_state(_decoder_state(tmp_path / "again.pth"), _decoder_state(tmp_path / "whole.pth"))
    resumed, whole = (torch.load(tmp_path / f"{n}_ckpt" / "latest.pth", weights_only=True) for n in ("again", "whole"))
    assert resumed["step"] == whole["step"] == 4
    assert torch.equal(resumed["history"]["total"], whole["history"]["total"])


ADAIN_BAD = [
    (["{paintings}", "--data", "{tmp}/no_photos"], "--data {tmp}/no_photos: no such folder"),
    (["{tmp}/no_paintings", "--data", "{photos}"], "STYLES {tmp}/no_paintings: no such folder"),
    (["{empty}", "--data", "{photos}"], "STYLES {empty} holds no images"),
    (["{paintings}", "--data", "{empty}"], "--data {empty} holds no images"),
    (["{photos}/0.png", "--data", "{photos}"], "STYLES {photos}/0.png is a file, not a folder"),
    (["{paintings}", "--data", "{photos}", "--steps", "-3"], "--steps: -3 must be a positive whole number"),
    (["{paintings}", "--data", "{photos}", "--steps", "0"], "--steps: 0 must be a positive whole number"),
    (["{paintings}", "--data", "{photos}", "--image-size", "8"], "--image-size: 8 must be at least 16"),
    (["{paintings}", "--data", "{photos}", "--lr", "0"], "--lr: 0 must be greater than 0"),
    (["{paintings}", "--data", "{photos}", "--encoder", "{tmp}/vgg.pth"], "--encoder {tmp}/vgg.pth: no such file"),
    (["{paintings}", "--data", "{photos}", "--resume"], "--resume needs --checkpoint-dir"),
    (["{paintings}", "--data", "{photos}", "--checkpoint-dir", "{old}"],
     "--checkpoint-dir {old} already holds checkpoints of a run: add --resume"),
    (["{paintings}", "--data", "{photos}", "--checkpoint-dir", "{photos}/0.png"], "is a file: give a folder"),
    (["{paintings}", "--data", "{photos}", "-o", "{tmp}/decoder.txt"], "'.txt' is not one of .pth .pt"),
]


@pytest.mark.parametrize("argv, message", ADAIN_BAD, ids=[f"{a[0]} {' '.join(a[1:][-2:])}" for a, _ in ADAIN_BAD])
def test_train_adain_bad_input_exits_2_naming_the_option_before_any_work(argv, message, adain_folders, quick_env,
                                                                         tmp_path, no_work, capsys):
    photos, paintings = adain_folders
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "step_000002.pth").write_bytes(b"a checkpoint of an earlier run")
    fill = dict(tmp=tmp_path, photos=photos, paintings=paintings, empty=tmp_path / "empty", old=tmp_path / "old")
    before = sorted(tmp_path.rglob("*"))
    words = ["train-adain", *(a.format(**fill) for a in argv[:3]), "--steps", "2", *(a.format(**fill) for a in argv[3:])]
    if "-o" not in words:
        words += ["-o", str(tmp_path / "decoder.pth")]
    assert cli.main(words) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message.format(**fill) in err[-1] and "error:" in err[-1], err
    if err[-1].startswith("nstlib: error:"):  # our own errors are exactly one line
        assert len(err) == 1
    assert no_work == [] and sorted(tmp_path.rglob("*")) == before  # refused before any work, nothing written


# -- stylize --adain ---------------------------------------------------------------------------


def _adain_cli(content: Path, styles: list[Path], out: Path, *options: str) -> int:
    return cli.main(["stylize", str(content), *map(str, styles), "--adain", *options, "-o", str(out),
                     "--size", str(SIZE), "--device", "cpu", "--quiet"])


def test_adain_writes_what_stylize_adain_returns(images, quick_env, no_network, tmp_path, capsys):
    """The oracle: nstlib.stylize_adain with the same model (the released decoder: in quick mode the announced
    random stand-ins), content, style(s), alpha, style weights and colour option, saved the same way."""
    from nstlib.adain_model import stylize_adain

    content, style = images
    second = _write(tmp_path / "second.png", 36, 44, 2)
    runs = [(["--alpha", "0.6"], [style], dict(alpha=0.6)),
            (["--style-blend", "3,1"], [style, second], dict(style_weights=[3, 1])),
            (["--preserve-color", "--style-size", "24"], [style], dict(preserve_color=True, style_size=24))]
    printed = []
    for i, (options, styles, _) in enumerate(runs):
        assert _adain_cli(content, styles, tmp_path / f"adain{i}.png", *options) == 0
        printed.append(capsys.readouterr().out)
    assert "QUICK MODE" in printed[0]
    assert all("decoder.pth is not cached; using a random stand-in" in text for text in printed)
    assert (f"wrote {tmp_path / 'adain0.png'} (32x21, AdaIN, the released decoder, quick-mode random stand-in "
            "weights, alpha 0.6, cpu) in ") in printed[0]
    model = nstlib.load_adain()
    plain = to_uint8(stylize_adain(model, str(content), str(style), size=SIZE)).astype(int)
    for i, (options, styles, kwargs) in enumerate(runs):
        style_arg = [str(s) for s in styles] if len(styles) > 1 else str(styles[0])
        oracle = to_uint8(stylize_adain(model, str(content), style_arg, size=SIZE, **kwargs)).astype(int)
        assert np.array_equal(pixels(tmp_path / f"adain{i}.png"), oracle), options
        assert not np.array_equal(oracle, plain), options  # each option changes the picture


def test_adain_alpha_0_decodes_the_content_whatever_the_style(images, quick_env, no_network, tmp_path):
    """alpha 0: the decoder's input is f(content) alone, so two different styles give the same picture, and the
    second formula, clamp(g(f(c))) cropped to the content's size, computed from the model's parts, gives it too."""
    from nstlib.adain_model import stylize_adain

    content, style = images
    other = _write(tmp_path / "other.png", 40, 24, 7)
    for name, painting in (("a.png", style), ("b.png", other)):
        assert _adain_cli(content, [painting], tmp_path / name, "--alpha", "0") == 0
    model = nstlib.load_adain()
    image = load_image(content, SIZE)
    with torch.no_grad():
        decoded = model.decode(model.encode(image))[..., :image.shape[-2], :image.shape[-1]].clamp(0, 1)
    assert np.array_equal(pixels(tmp_path / "a.png"), to_uint8(decoded).astype(int))
    assert np.array_equal(pixels(tmp_path / "b.png"), pixels(tmp_path / "a.png"))
    # not a trivial equality: at alpha 1 the two styles give different pictures
    assert not torch.equal(stylize_adain(model, str(content), str(style), size=SIZE),
                           stylize_adain(model, str(content), str(other), size=SIZE))


def test_adain_reads_a_decoder_written_by_train_adain(adain_folders, images, quick_env, no_network, tmp_path,
                                                      monkeypatch, capsys):
    """nstlib train-adain writes DECODER.pth; stylize --adain DECODER.pth runs the model with exactly the file's
    decoder weights and writes what nstlib.stylize_adain(nstlib.load_adain(DECODER.pth), ...) returns."""
    import nstlib.adain_model

    photos, paintings = adain_folders
    content, style = images
    decoder = tmp_path / "mine_decoder.pth"
    assert cli.main(["train-adain", str(paintings), "--data", str(photos), "--steps", "2", "--batch-size", "2",
                     "--image-size", "16", "--lr", "1e-3", "--seed", "3", "--quiet", "-o", str(decoder)]) == 0
    real, used = nstlib.adain_model.stylize_adain, []

    def spy(model, *args, **kwargs):
        used.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(nstlib.adain_model, "stylize_adain", spy)
    out = tmp_path / "mine.png"
    assert _adain_cli(content, [style], out, str(decoder)) == 0
    assert f"AdaIN, decoder {decoder}, " in capsys.readouterr().out
    assert len(used) == 1 and _same_state(used[0].decoder.state_dict(), _decoder_state(decoder))
    oracle = real(nstlib.load_adain(decoder), str(content), str(style), size=SIZE)
    assert np.array_equal(pixels(out), to_uint8(oracle).astype(int))
    released = real(nstlib.load_adain(), str(content), str(style), size=SIZE)
    assert not np.array_equal(pixels(out), to_uint8(released).astype(int))  # the file was used, not the release


def test_adain_decoder_trained_with_a_random_encoder_runs_with_that_encoder(adain_folders, images, quick_env,
                                                                           no_network, tmp_path, monkeypatch):
    """train-adain --encoder random, then stylize --adain FILE --adain-encoder random: the model holds the seeded
    random encoder (the oracle: nstlib.load_adain(FILE, encoder="random")) and the output is its result."""
    import nstlib.adain_model

    photos, paintings = adain_folders
    content, style = images
    decoder = tmp_path / "rand_decoder.pth"
    assert cli.main(["train-adain", str(paintings), "--data", str(photos), "--steps", "1", "--batch-size", "2",
                     "--image-size", "16", "--encoder", "random", "--quiet", "-o", str(decoder)]) == 0
    real, used = nstlib.adain_model.stylize_adain, []
    monkeypatch.setattr(nstlib.adain_model, "stylize_adain",
                        lambda model, *a, **k: used.append(model) or real(model, *a, **k))
    out = tmp_path / "rand.png"
    assert _adain_cli(content, [style], out, str(decoder), "--adain-encoder", "random") == 0
    want = nstlib.load_adain(decoder, encoder="random")
    assert len(used) == 1 and _same_state(used[0].encoder.state_dict(), want.encoder.state_dict())
    assert np.array_equal(pixels(out), to_uint8(real(want, str(content), str(style), size=SIZE)).astype(int))


def test_adain_weights_that_cannot_be_obtained_stop_the_command(images, env, http_server, monkeypatch, tmp_path,
                                                                capsys):
    """Outside quick mode, weights that cannot be fetched (a mirror answering 404) are an error naming the file
    and how to install it by hand (exit 1, one line): never random weights, no output written."""
    content, style = images
    monkeypatch.setenv(config.ENV_MIRROR, http_server.url("/mirror"))
    out = tmp_path / "adain.png"
    assert _adain_cli(content, [style], out) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nstlib: error: could not download the AdaIN weights "
                                               "vgg_normalised.pth"), err
    assert "place it at" in err[0] and "stand-in" not in captured.out and not out.exists()


def test_stylize_a_video_with_adain(images, quick_env, no_network, tmp_path, capsys):
    """nstlib stylize in.mp4 STYLE --adain: the style encoded once, every frame through AdaIN; the oracle is
    nstlib.stylize_video with nstlib.stylize_adain given the style image at every frame, decoded frame by frame."""
    from nstlib.adain_model import stylize_adain

    _, style = images
    clip = nstlib.make_synthetic_clip(tmp_path / "in.mp4", frames=4, size=(48, 32), fps=12)
    assert cli.main(["stylize", str(clip), str(style), "--adain", "--alpha", "0.8", "--blend", "0.3", "--no-audio",
                     "-o", str(tmp_path) + "/", "--quiet"]) == 0
    out = tmp_path / "in_style.mp4"  # the default name, CONTENT_STYLE with the video's extension
    assert f"wrote {out} (4 frames at 12 fps" in capsys.readouterr().out
    model, reference = nstlib.load_adain(), tmp_path / "reference.mp4"
    nstlib.stylize_video(clip, reference, lambda frame: stylize_adain(model, frame, str(style), alpha=0.8,
                                                                      style_size=cli.DEFAULT_SIZE),
                         blend=0.3, audio="drop", progress=False)
    got, want = nstlib.read_frames(out), nstlib.read_frames(reference)
    assert got.shape[0] == 4 and got.shape == want.shape
    assert torch.equal(got, want)


# -- download ----------------------------------------------------------------------------------

BODY = b"\x89PNG not really, but bytes with a known digest " * 100


@pytest.fixture
def served_sample(http_server, env, monkeypatch):
    """A manifest entry for BODY, which a local mirror URL serves under its manifest path."""
    sample = samples.Sample(name="cli_test", kind="style", file="style/cli_test.jpg", title="Test", artist="unknown",
                            year=None, rights="made for the tests", url="https://example.invalid/cli_test.jpg",
                            sha256=hashlib.sha256(BODY).hexdigest(), bytes=len(BODY), width=10, height=10)
    monkeypatch.setitem(samples.SAMPLES, sample.name, sample)
    monkeypatch.setenv(config.ENV_MIRROR, http_server.base_url + "/mirror/")
    return sample


def test_download_a_sample_from_a_mirror_url(served_sample, http_server, cache_dir, capsys):
    http_server.add("/mirror/style/cli_test.jpg", BODY)
    assert cli.main(["download", "CLI-Test", "--quiet"]) == 0  # names are case- and dash-insensitive
    cached = cache_dir / "images" / "style" / "cli_test.jpg"
    assert cached.read_bytes() == BODY
    assert capsys.readouterr().out.strip() == f"cli_test: {cached}"
    assert cli.main(["download", "cli_test", "--quiet"]) == 0  # cached: no second request
    assert http_server.count("/mirror/style/cli_test.jpg") == 1


def test_failed_download_exits_1_with_one_line(served_sample, http_server, cache_dir, capsys):
    http_server.add("/mirror/style/cli_test.jpg", BODY[:-1] + b"?")  # same size, other bytes
    assert cli.main(["download", "cli_test", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nstlib: error: cli_test: download of ") and "sha256" in err[0]
    assert not (cache_dir / "images" / "style" / "cli_test.jpg").exists()


def test_download_in_quick_mode_writes_stand_ins_and_never_downloads(quick_env, cache_dir, no_network, capsys):
    assert cli.main(["download", "wave", "vgg19", "pretrained", "coco-val2017", "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ":" in line and not line.startswith("Quick")]
    standin = cache_dir / "standins" / "wave.png"
    assert f"wave: {standin} (quick mode: a synthetic stand-in, not the real image)" in lines
    with Image.open(standin) as image:
        assert np.array_equal(np.asarray(image.convert("RGB")),
                              np.asarray(samples.standin(samples.get_sample("wave")).convert("RGB")))
    for name in ("vgg19", "pretrained", "coco-val2017"):
        assert f"{name}: not downloaded: quick mode (NSTLIB_QUICK=1) never uses the network; unset it to " \
               "download" in lines
    assert not (cache_dir / "datasets").exists() and not (cache_dir / "pretrained").exists()


# -- batch and info ----------------------------------------------------------------------------


def test_batch_hands_its_arguments_to_nstlib_batch(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(batch, "run_arguments", lambda args: calls.append(vars(args)) or 1)
    assert cli.main(["batch", "a.yaml", "b.yaml", "--workers", "3", "--force"]) == 1  # its exit code is ours
    assert {k: calls[-1][k] for k in ("grids", "workers", "output", "force")} == {
        "grids": [Path("a.yaml"), Path("b.yaml")], "workers": 3, "output": None, "force": True}
    assert cli.main(["batch", "a.yaml", "--output", str(tmp_path)]) == 1
    assert {k: calls[-1][k] for k in ("grids", "workers", "output", "force")} == {
        "grids": [Path("a.yaml")], "workers": 1, "output": tmp_path, "force": False}


def test_batch_output_needs_a_single_grid(tmp_path, capsys):
    argv = [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), "--output", str(tmp_path)]
    assert cli.main(["batch", *argv]) == 2
    assert "--output needs a single grid file" in capsys.readouterr().err
    # argparse refuses it before any grid is read
    assert cli.main(["batch", str(tmp_path / "a.yaml"), "--workers", "0"]) == 2
    assert "--workers: 0 must be" in capsys.readouterr().err


def test_info_reports_the_settings(env, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_MIRROR, "/srv/nst-mirror")
    assert cli.main(["info"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    lines = {key: value.strip() for key, value in lines.items()}
    assert lines["nstlib"].startswith(nstlib.__version__)
    assert lines["torch"].startswith(torch.__version__)
    assert lines["quick mode"] == "off"
    assert lines["cache"] == f"{cache_dir} (not created yet) [NSTLIB_CACHE]"
    assert lines["mirror"] == "/srv/nst-mirror [NSTLIB_MIRROR]"
    assert lines["device"].startswith("cuda" if torch.cuda.is_available() else ("mps", "cpu"))
    assert lines["pretrained models"].startswith("0 of 4 cached")
    assert lines["vgg19 weights"].startswith("not cached: ")  # TORCH_HOME is a fresh folder
    from nstlib.fast import AUTO_ORDER, cpu_backend, native_bfloat16
    assert set(cli._CPU_BACKEND_REASONS) == set(AUTO_ORDER)  # a reason for every backend auto can pick
    assert lines["fast path on cpu"].startswith(f"backend {cpu_backend()!r} for backend='auto' (")
    assert ("natively" in lines["fast path on cpu"]) == native_bfloat16()
    assert lines["freed memory"].endswith("[NSTLIB_REUSE_MEMORY]")


def test_info_says_when_freed_memory_is_left_alone(env, monkeypatch, capsys):
    from nstlib import cpu_memory
    monkeypatch.setattr(cpu_memory, "_applied", False)
    monkeypatch.setattr(cpu_memory, "_glibc", lambda: object())
    monkeypatch.setenv("NSTLIB_REUSE_MEMORY", "0")
    assert cli.main(["info"]) == 0
    assert "freed memory:" in (out := capsys.readouterr().out)
    assert "glibc's defaults (NSTLIB_REUSE_MEMORY=0) [NSTLIB_REUSE_MEMORY]" in out


# -- errors that would come after the work: checked before it -----------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Replace the slow library calls of stylize and train by recorders that then stop the command as
    Ctrl-C would (exit code 130): any call is work done too early."""
    calls = []

    def recorder(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr("nstlib.gatys.stylize", recorder("stylize"))
    monkeypatch.setattr("nstlib.fast.stylize_image", recorder("stylize_image"))
    monkeypatch.setattr("nstlib.training.train_transform_net", recorder("train"))
    monkeypatch.setattr("nstlib.adain_training.train_adain_decoder", recorder("train-adain"))
    return calls


def test_unwritable_output_is_refused_before_any_work(images, checkpoint, env, tmp_path, monkeypatch, no_work,
                                                      capsys):
    import tempfile

    content, style = images
    model, _ = checkpoint
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkstemp = tempfile.mkstemp

    def refusing_mkstemp(*args, dir=None, **kwargs):  # what a read-only folder answers (root ignores chmod)
        if dir is not None and Path(dir) == locked:
            raise PermissionError(13, "Permission denied", str(Path(dir) / "probe"))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refusing_mkstemp)
    runs = {
        "gatys": ["stylize", str(content), str(style), "-o", str(locked / "out.png")],
        "fast": ["stylize", str(content), "--model", str(model), "-o", str(locked / "deeper" / "out.png")],
        "train": ["train", str(style), "--data", "synthetic", "--steps", "1", "-o", str(locked / "m.pth")],
    }
    for name, argv in runs.items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nstlib: error: -o {argv[-1]}: cannot write in {locked} "
                                                   "(Permission denied)"), (name, err)
    assert no_work == [] and sorted(p.name for p in locked.iterdir()) == []  # no probe file left behind
    # a folder that does not exist yet is fine when it can be created; nothing is created before the work
    fresh = tmp_path / "new" / "deeper" / "m.pth"
    assert cli.main(["train", str(style), "--data", "synthetic", "--steps", "1", "-o", str(fresh)]) == 130
    assert no_work == ["train"] and not (tmp_path / "new").exists()


def test_out_of_memory_names_the_size_and_exits_1(images, checkpoint, env, tmp_path, monkeypatch, capsys):
    content, style = images
    model, _ = checkpoint
    cpu_oom = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)")
    windows_oom = RuntimeError("[enforce fail at ..\\c10\\core\\impl\\alloc_cpu.cpp:72] data. "
                               "DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes.")
    cuda_oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.75 GiB "
                                           "total capacity)")

    def raising(error):
        def stand_in(*args, **kwargs):
            raise error
        return stand_in

    cases = [
        ("nstlib.gatys.stylize", cpu_oom, ["stylize", str(content), str(style), "--size", "3000"],
         ["--size 3000", "try a smaller --size", "can't allocate memory"]),
        ("nstlib.gatys.stylize", windows_oom, ["stylize", str(content), str(style), "--scales", "256,2048"],
         ["--scales 256,2048", "try smaller --scales", "not enough memory"]),
        ("nstlib.gatys.stylize", MemoryError(), ["stylize", str(content), str(style)],
         ["--size 512", "try a smaller --size", "MemoryError"]),
        ("nstlib.fast.stylize_image", cuda_oom, ["stylize", str(content), "--model", str(model), "--size", "1024"],
         ["--size 1024", "try a smaller --size, e.g. --size 512", "CUDA out of memory"]),
        ("nstlib.training.train_transform_net", cpu_oom,
         ["train", str(style), "--data", "synthetic", "--steps", "1", "--image-size", "1024"],
         ["--batch-size 4 and --image-size 1024", "try a smaller --batch-size or --image-size"]),
    ]
    for i, (target, error, argv, words) in enumerate(cases):
        monkeypatch.setattr(target, raising(error))
        out = tmp_path / f"o{i}.{'pth' if argv[0] == 'train' else 'png'}"
        assert cli.main([*argv, "-o", str(out)]) == 1, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nstlib: error: out of memory"), lines
        assert all(word in lines[0] for word in words), (words, lines[0])
        assert not out.exists()
    # any other RuntimeError is still a bug, with its traceback
    monkeypatch.setattr("nstlib.gatys.stylize", raising(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli.main(["stylize", str(content), str(style), "-o", str(tmp_path / "bug.png")])


# -- a quick start: the parser imports nothing heavy --------------------------------------------

HEAVY = ("torch", "torchvision", "numpy", "PIL", "matplotlib", "ipywidgets", "tqdm")


def test_help_and_import_load_no_heavy_module():
    """``nstlib --help`` builds the whole parser (and ``download``'s help, which lists the samples,
    stays unread); ``import nstlib`` binds its names lazily. Neither imports torch and the like:
    the modules loaded are read from ``sys.modules`` of a fresh interpreter."""
    code = ("import contextlib, io, sys\n"
            "import nstlib\n"
            "after_import = sorted(m for m in {heavy} if m in sys.modules)\n"
            "from nstlib import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    code = cli.main(['--help'])\n"
            "assert code == 0 and 'stylize' in out.getvalue(), out.getvalue()\n"
            "print(after_import, sorted(m for m in {heavy} if m in sys.modules))\n"
            "nstlib.gram_matrix\n"
            "print('torch' in sys.modules)\n").format(heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[] []", "True"]  # and the first use of a name imports its module


def test_download_help_lists_the_samples_when_shown(capsys):
    assert cli.main(["download", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in samples.sample_names())
    assert all(name in text for name in cli.DOWNLOAD_GROUPS)  # never split at a hyphen (coco-train2014)


def test_layer_help_is_the_same_for_stylize_and_train(capsys):
    """Both commands say that both namings are accepted, and each shows its defaults as the library
    defines them (the oracle: nstlib.layers' Gatys layers, nstlib.training's defaults)."""
    from nstlib import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS
    from nstlib.training import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

    texts = {}
    for command in ("stylize", "train"):
        assert cli.main([command, "--help"]) == 0
        texts[command] = " ".join(capsys.readouterr().out.split())
    sentence = "Both namings are accepted: Gatys' conv4_2, relu4_2 and the PyTorch tutorial's conv_10, relu_10"
    for command, text in texts.items():
        assert text.count(sentence) == 2, command  # --content-layers and --style-layers
    assert f"gatys: {','.join(GATYS_CONTENT_LAYERS)})" in texts["stylize"]
    assert f"gatys: {','.join(GATYS_STYLE_LAYERS)})" in texts["stylize"]
    assert f"(default {','.join(DEFAULT_CONTENT_LAYERS)})" in texts["train"]
    assert f"(default {','.join(DEFAULT_STYLE_LAYERS)})" in texts["train"]
    # the names the help promises are names the library takes: both schemes, one layer
    from nstlib.layers import resolve_layer

    assert resolve_layer("conv_10") == "conv4_2" and resolve_layer("relu_10") == "relu4_2"


# -- -o: folders and default names ------------------------------------------------------------


def test_default_output_names():
    def name(*argv):
        return cli.default_output_name(cli.build_parser().parse_args(list(argv)))

    assert name("stylize", "tubingen", "starry_night") == "tubingen_starry_night.jpg"
    assert name("stylize", "photos/cat.png", "a/wave.jpg", "b/the scream.webp") == "cat_wave+the_scream.jpg"
    assert name("stylize", "https://example.org/img/My%20Photo.jpeg?size=2", "--model", "candy") == "My_Photo_candy.jpg"
    assert name("stylize", "cat.png", "--model", "models/starry.pth") == "cat_starry.jpg"
    assert name("stylize", "cat.png", "a/wave.jpg", "--adain") == "cat_wave.jpg"
    assert name("stylize", "cat.png", "a/wave.jpg", "candy", "--adain", "mine_decoder.pth") == "cat_wave+candy.jpg"
    assert name("train", "starry_night", "--data", "synthetic", "--steps", "1") == "starry_night.pth"
    assert name("train", "art/wave.jpg", "candy", "--data", "synthetic", "--steps", "1") == "wave+candy.pth"
    assert name("train-adain", "art/paintings/", "--data", "synthetic", "--steps", "1") == "paintings_decoder.pth"
    assert name("train-adain", "synthetic", "--data", "synthetic", "--steps", "1") == "synthetic_decoder.pth"


def test_output_folder_or_no_output_gets_the_default_name(images, checkpoint, env, tmp_path, monkeypatch, capsys):
    """-o . / -o FOLDER / -o NEW/ / no -o: the default name (content.png + model.pth: content_model.jpg)
    written in that folder; an existing one is refused without --force."""
    content, _ = images
    model, _ = checkpoint
    work = tmp_path / "work"
    (work / "existing").mkdir(parents=True)
    monkeypatch.chdir(work)
    run = ["stylize", str(content), "--model", str(model), "--size", str(SIZE)]
    cases = [([], work), (["-o", "."], work), (["-o", "existing"], work / "existing"),
             (["-o", str(work / "new" / "deeper") + "/"], work / "new" / "deeper")]
    for extra, folder in cases:
        for old in work.rglob("*.jpg"):
            old.unlink()
        assert cli.main(run + extra) == 0, (extra, capsys.readouterr().err)
        out = folder / "content_model.jpg"
        assert f"wrote {out if extra and extra[-1].startswith('/') else out.relative_to(work)} (32x21" \
            in capsys.readouterr().out
        assert pixels_jpeg_size(out) == EXPECTED
        assert cli.main(run + extra) == 2  # now it exists
        err = capsys.readouterr().err
        assert "content_model.jpg already exists: pass --force" in err and "PosixPath" not in err
        assert cli.main(run + extra + ["--force"]) == 0
        capsys.readouterr()


def test_output_mistakes_name_the_folder_and_the_fix(images, checkpoint, env, tmp_path, capsys):
    content, style = images
    models = tmp_path / "models"
    models.mkdir()
    (models / "style.pth").write_bytes(b"keep me")
    # train -o FOLDER: STYLE.pth inside it, which exists
    assert cli.main(["train", str(style), "--data", "synthetic", "--steps", "1", "-o", str(models)]) == 2
    assert f"-o {models / 'style.pth'} already exists: pass --force" in capsys.readouterr().err
    # a name without extension that is not a folder: the extension, and how to name a folder
    assert cli.main(["stylize", str(content), str(style), "-o", str(tmp_path / "result")]) == 2
    err = capsys.readouterr().err
    assert "the extension '(none)' is not one of" in err and "result.png" in err
    assert "a path ending in /) to write content_style.jpg in it" in err
    assert (models / "style.pth").read_bytes() == b"keep me" and not (tmp_path / "result").exists()


# -- the VGG19 error speaks the command line's language ------------------------------------------


def test_offline_vgg19_error_names_the_command_line_option(images, env, tmp_path, no_network, capsys):
    from nstlib.vgg import WeightsError, load_vgg19_state

    with pytest.raises(WeightsError) as library:
        load_vgg19_state("imagenet", progress=False)
    library_text = " ".join(line.strip() for line in str(library.value).splitlines() if line.strip())
    assert "pass weights=None" in library_text  # the library's spelling, for Python callers

    content, style = images
    out = tmp_path / "out.png"
    assert cli.main(["stylize", str(content), str(style), "-o", str(out), "--size", str(SIZE), "--steps", "1",
                     "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists()
    expected = library_text.replace("pass weights=None", "pass --weights random (nstlib stylize, nstlib train)")
    assert err[0] == f"nstlib: error: {expected}"
    assert "weights=None" not in err[0]


# -- watching a run: intermediate images and a loss log ----------------------------------------

LINE = re.compile(r"^step (\d+): total (\S+), content (\S+), style (\S+), tv (\S+)(?:, lr (\S+))? \((\S+) s\)$")


def _logged(text: str) -> dict[int, dict[str, float]]:
    """The ``step N: ...`` lines of ``text``, parsed."""
    found = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            step, total, content, style, tv, lr, _ = match.groups()
            found[int(step)] = {"total": float(total), "content": float(content), "style": float(style),
                                "tv": float(tv), **({"lr": float(lr)} if lr else {})}
    return found


def test_stylize_save_every_and_print_every(images, quick_env, tmp_path, capsys):
    """Images at steps 2 and 4 of 5 and loss lines at steps 2 and 4; the oracle is the library's run
    with a callback that keeps the images, and its history."""
    content, style = images
    out = tmp_path / "run" / "out.png"
    argv = ["stylize", str(content), str(style), "-o", str(out), "--size", str(SIZE), "--steps", "5",
            "--optimizer", "adam", "--save-every", "2", "--print-every", "2", "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    kept = {}
    oracle = stylize(str(content), str(style), steps=5, optimizer="adam", size=SIZE, seed=0, device="cpu",
                     progress=False, callback=lambda step, image, losses: kept.setdefault(step, image.clone()),
                     callback_every=1)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.png", "out_0002.png", "out_0004.png"]
    for step in (2, 4):
        assert np.array_equal(pixels(cli.step_path(out, step)), to_uint8(kept[step]).astype(int)), step
    assert np.array_equal(pixels(out), to_uint8(oracle.image).astype(int))
    logged = _logged(printed)
    assert sorted(logged) == [2, 4]
    for step, values in logged.items():
        for key, value in values.items():
            assert value == pytest.approx(oracle.history[key][step - 1], rel=1e-5, abs=1e-30), (step, key)
    # intermediate files are never overwritten without --force (checked before any work)
    out.unlink()
    assert cli.main(argv) == 2
    assert f"--save-every 2: {cli.step_path(out, 2)} already exists: pass --force" in capsys.readouterr().err
    assert not out.exists()
    # they only apply to Gatys optimisation
    assert cli.main(["stylize", str(content), "--model", "candy", "--save-every", "2", "-o", str(out)]) == 2
    assert "--save-every only apply to Gatys" in capsys.readouterr().err


def test_train_log_every_prints_the_history(images, env, tmp_path, capsys):
    _, style = images
    model = tmp_path / "style.pth"
    argv = ["train", str(style), "--data", "synthetic", "--max-images", "4", "--steps", "4", "--batch-size", "2",
            "--image-size", "16", "--weights", "random", "--seed", "5", "--device", "cpu", "--quiet",
            "--log-every", "2", "-o", str(model)]
    assert cli.main(argv) == 0
    logged = _logged(capsys.readouterr().out)
    data = nstlib.open_dataset("synthetic", 16, n=4)
    oracle = train_transform_net(str(style), data, steps=4, batch_size=2, image_size=16, weights=None, seed=5,
                                 device="cpu", progress=False)
    assert sorted(logged) == [2, 4]
    for step, values in logged.items():
        index = oracle.history["step"].index(step)
        assert set(values) == {"total", "content", "style", "tv", "lr"}
        for key, value in values.items():
            assert value == pytest.approx(oracle.history[key][index], rel=1e-5, abs=1e-30), (step, key)


def test_readme_command_lines_parse():
    """Every ``nstlib ...`` line of the README's "Command line" section is accepted by the parser,
    and the options it shows there exist (argparse refuses an unknown one with exit code 2)."""
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line"):]
    section = section[:section.index("\n## ", 1)]
    block = section[section.index("```bash"):section.index("```", section.index("```bash") + 3)]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    commands = [words[1:] for words in lines if words and words[0] == "nstlib"]
    assert len(commands) >= 6 and {"--save-every", "--print-every", "--log-every"} <= {w for c in commands for w in c}
    parser = cli.build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        assert args.command == argv[0]


def test_names_written_out_to_start_quickly_match_their_source():
    # cli keeps a few names as literals so that its parser and `nstlib info` import less; the oracle is
    # where they come from
    from torchvision.models import VGG19_Weights
    from nstlib.training import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

    assert cli.VGG19_FILE == VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert (cli.TRAIN_CONTENT, cli.TRAIN_STYLE) == (DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS)
    from nstlib.adain_model import MIN_SIZE

    assert cli.ADAIN_MIN_SIZE == MIN_SIZE


def test_backend_reaches_stylize_image_and_needs_a_model(quick_env, tmp_path, monkeypatch, capsys):
    """--backend is handed to nstlib.fast.stylize_image as given (default auto); without --model it is refused."""
    import nstlib.fast

    seen = []
    real = nstlib.fast.stylize_image

    def spy(net, image, **kwargs):
        seen.append(kwargs["backend"])
        return real(net, image, device=kwargs["device"], backend="torch")

    monkeypatch.setattr(nstlib.fast, "stylize_image", spy)
    photo = tmp_path / "photo.png"
    nstlib.save_image(torch.rand(1, 3, 24, 32), photo)
    assert cli.main(["stylize", str(photo), "--model", "candy", "-o", str(tmp_path / "a.png")]) == 0
    assert cli.main(["stylize", str(photo), "--model", "candy", "--backend", "torch",
                     "-o", str(tmp_path / "b.png")]) == 0
    assert seen == ["auto", "torch"]
    assert cli.main(["stylize", str(photo), str(photo), "--backend", "onnx", "-o", str(tmp_path / "c.png")]) == 2
    assert "--backend onnx chooses how a fast model runs: it needs --model" in capsys.readouterr().err


def test_stylize_a_video_with_a_fast_model(quick_env, tmp_path, capsys):
    """nstlib stylize in.mp4 --model candy: every frame through the model; the frame count, the frame rate
    and the flicker it reports are those of the written file (read back with nstlib.read_frames)."""
    from nstlib.video import READ_SUFFIXES

    assert cli.VIDEO_READ_SUFFIXES <= READ_SUFFIXES
    clip = nstlib.make_synthetic_clip(tmp_path / "in.mp4", frames=6, size=(48, 32), fps=12, with_audio=True)
    out = tmp_path / "out.mp4"
    assert cli.main(["stylize", str(clip), "--model", "candy", "--blend", "0.5", "--no-audio", "-o", str(out),
                     "--quiet"]) == 0
    line = capsys.readouterr().out
    info = nstlib.video_info(out)
    assert "6 frames at 12 fps" in line and "audio dropped" in line
    assert info.frames == 6 and float(info.fps) == 12 and info.audio_codec is None
    assert cli.main(["stylize", str(clip), str(clip), "-o", str(tmp_path / "g.mp4")]) == 2
    assert "is a video" in capsys.readouterr().err
    assert cli.main(["stylize", str(clip), "--model", "candy", "--blend", "1"]) == 2


def test_export_writes_examples_format_and_onnx(quick_env, tmp_path, capsys):
    """nstlib export: the examples file equals nstlib.checkpoints.to_examples_state_dict of the same model;
    the ONNX file runs in ONNX Runtime to the PyTorch output."""
    import numpy as np
    import onnxruntime

    from nstlib.checkpoints import to_examples_state_dict

    net = TransformerNet()
    model = save_transform_net(net, tmp_path / "net.pth")
    out = tmp_path / "net_examples.pth"
    assert cli.main(["export", str(model), "--format", "examples", "-o", str(tmp_path) + "/"]) == 0
    saved = torch.load(out, weights_only=True)
    expected = to_examples_state_dict(load_transform_net(model))
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)
    onnx_file = tmp_path / "net.onnx"
    assert cli.main(["export", str(model), "--format", "onnx", "-o", str(onnx_file)]) == 0
    image = torch.rand(1, 3, 36, 44)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: image.numpy()})[0]
    with torch.no_grad():
        want = load_transform_net(model)(image).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert cli.main(["export", "nope.pth", "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
