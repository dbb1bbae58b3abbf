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
                "--scales", "--style-blend", "--seed", "--device", "--weights", "--quiet", "--force", "--output"],
    "train": ["--data", "--steps", "--epochs", "--batch-size", "--image-size", "--content-weight", "--style-weight",
              "--tv-weight", "--lr", "--checkpoint-dir", "--checkpoint-every", "--sample-every", "--resume", "--seed",
              "--device", "--output"],
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
