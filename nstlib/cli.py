"""The ``nstlib`` command line: stylise, train, download, run batches, show the setup.

::

    nstlib stylize CONTENT STYLE [STYLE ...] [-o OUT.jpg] [options] Gatys et al.: optimise the pixels
    nstlib stylize CONTENT --model MODEL [-o OUT.jpg]                Johnson et al.: one forward pass
    nstlib stylize CONTENT STYLE --adain [DECODER] [--alpha A]       Huang & Belongie: any style, one pass
    nstlib train STYLE --data DIR --steps N [-o MODEL.pth] [options] train a fast style network
    nstlib train-adain STYLES --data DIR --steps N [-o DECODER.pth]  train an AdaIN decoder (any style)
    nstlib download NAME [NAME ...]                                  samples, models, weights, datasets
    nstlib batch GRID.yaml [--workers N]                             papermill batches (nstlib.course.batch)
    nstlib book build|refresh                                        the course book (nstlib.course.book)
    nstlib stylize IN.mp4 --model MODEL -o OUT.mp4 [--blend B]       a video, frame by frame (nstlib.video;
                                                                     or IN.mp4 STYLE --adain)
    nstlib export MODEL --format examples|onnx -o OUT                a model for other tools
    nstlib info                                                      versions, device, settings

This module declares every subcommand and its options once; ``python -m nstlib`` and
``python -m nstlib.course`` (which means ``nstlib book``) run the same parser.

``python -m nstlib ...`` is the same command. Every subcommand has ``--help``. Images
(CONTENT, STYLE) are anything :func:`nstlib.load_image` reads: a path, an http(s) URL or a
sample name (``nstlib download samples`` lists them by fetching them).

Exit codes: **0** success; **2** bad input or usage (argparse's convention): a missing file,
an unknown image, model or download name, a bad size or step count (a size in pixels is at most
:data:`MAX_SIZE`), an output that exists without ``--force``, cannot be written or has the wrong
extension; **1** a runtime failure: a download that failed, weights that could not be obtained,
training that diverged, memory that ran out (the message names the size to reduce). An expected
error is one line on stderr,
``nstlib: error: ...``, naming the problem and the fix; ``--debug`` adds the traceback.
Anything else is a bug and shows its traceback.

Outputs (``-o``) are checked before any work starts: an existing file is an error unless
``--force`` is given, the folder must exist or be creatable and accept a file (a temporary file
is created and removed there), and the extension must be one that is written (an image format
for ``stylize``, ``.pth`` or ``.pt`` for ``train`` and ``train-adain``). Every file is written
atomically. Without ``-o``, or with ``-o FOLDER`` (an existing folder, ``.``, or a path ending in
``/``), the output gets a default name (:func:`default_output_name`: ``CONTENT_STYLE.jpg``,
``CONTENT_MODEL.jpg``, ``STYLE.pth``, ``STYLES_decoder.pth``; ``.mp4`` instead of ``.jpg`` for a video) in
the current folder or in FOLDER.

AdaIN: ``stylize CONTENT STYLE --adain [DECODER]`` runs :func:`~nstlib.stylize_adain` with
:func:`~nstlib.load_adain` (DECODER: a ``train-adain`` file or pytorch-AdaIN's ``decoder.pth``;
without it the released decoder). The style goes through the encoder once
(:func:`~nstlib.encode_style`), then every content image or video frame only through the encoder,
AdaIN and the decoder. Quick mode uses the announced random stand-ins; otherwise weights that
cannot be obtained are an error (exit 1), never random weights.

Watching a run: ``stylize --save-every N`` also writes the image every N steps
(:func:`step_path`: ``out_0050.jpg`` beside ``out.jpg``, checked like ``-o``), ``stylize
--print-every N`` and ``train --log-every N`` print ``step N: total ..., content ..., style ...,
tv ...`` (6 significant digits of the values in the run's history; ``train`` adds ``lr``;
``train-adain --log-every N`` prints total, content, style and lr).

Resuming: ``train`` and ``train-adain`` write checkpoints with ``--checkpoint-dir DIR``. With
``--resume`` they continue the run in DIR when it holds one and start it otherwise, so the same
command, run again after an interruption, carries on.

Starting is quick: building the parser imports no torch (nor numpy, PIL, matplotlib); each
subcommand imports what it needs when it runs, and ``import nstlib`` itself is lazy.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import sys
import tempfile
import textwrap
import time
import traceback
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .layers import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS  # names only: no torch

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "DOWNLOAD_GROUPS", "MAX_SIZE", "MODEL_SUFFIXES", "OutOfMemory",
           "UsageError", "build_parser", "main"]

EXIT_OK = 0
"""Exit code of a command that did what it was asked."""
EXIT_FAILURE = 1
"""Exit code of a runtime failure (download, weights, diverged training)."""
EXIT_USAGE = 2
"""Exit code of bad input: argparse's convention for usage errors."""

DOWNLOAD_GROUPS = ("samples", "pretrained", "vgg19", "labelme", "coco-val2017", "coco-train2014", "labelme-12-50k")
"""Names ``nstlib download`` takes besides the sample image names."""

DEFAULT_SIZE = 512
DEFAULT_STEPS = 300

MAX_SIZE = 4096
"""The largest ``--size``, ``--scales`` value and ``stylize --style-size`` (pixels, longer side). Memory
grows with the square of the size: VGG19's first layers alone hold 64 values per pixel, kept for the
gradient, so a Gatys run at 4096 px needs tens of GB."""

MODEL_SUFFIXES = (".pth", ".pt")
"""The extensions ``nstlib train -o`` accepts (a PyTorch file, as ``nstlib stylize --model`` expects)."""

DEFAULT_IMAGE_SUFFIX = ".jpg"
"""The extension of ``nstlib stylize``'s default output name."""

LAYER_NAMES_HELP = ("Both namings are accepted: Gatys' conv4_2, relu4_2 and the PyTorch tutorial's conv_10, "
                    "relu_10")
"""What the ``--content-layers`` and ``--style-layers`` help of every command says about layer names."""

TRAIN_CONTENT, TRAIN_STYLE = ("relu4_2",), ("relu1_2", "relu2_2", "relu3_4", "relu4_2", "relu5_4")
"""``nstlib train``'s default layers, shown in its help: ``nstlib.training.DEFAULT_CONTENT_LAYERS`` and
``DEFAULT_STYLE_LAYERS``, written out because importing :mod:`nstlib.training` imports torch (a test
checks that they agree). ``nstlib stylize``'s defaults come from :mod:`nstlib.layers`, which is light."""


ADAIN_MIN_SIZE = 16
"""The smallest ``train-adain --image-size``: :data:`nstlib.adain_model.MIN_SIZE`, written out because
importing :mod:`nstlib.adain_model` imports torch (a test checks that they agree)."""

ADAIN_DECODER_SUFFIX = "_decoder.pth"
"""``train-adain``'s default output name is ``STYLES`` (the folder's name) followed by this."""

ADAIN_PRETRAINED = "pretrained"
"""``stylize --adain`` without a value (or with this word): pytorch-AdaIN's released ``decoder.pth``."""


class UsageError(ValueError):
    """Bad command-line input found by the command itself (exit code 2)."""


class OutOfMemory(RuntimeError):
    """The CPU's or the GPU's memory ran out (exit code 1); the message names the option to reduce."""


# --------------------------------------------------------------------------------------
# argument types: each raises ArgumentTypeError, which argparse turns into exit code 2


def _whole_number(minimum: int, requirement: str, maximum: int | None = None):
    """An argparse type: ``text`` as an integer >= ``minimum`` (and <= ``maximum`` when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {requirement}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"{value} is larger than {maximum}, the most nstlib accepts (pixels on the longer side; memory "
                f"grows with the square of the size): give {maximum} or less")
        return value

    return parse


positive_int = _whole_number(1, "a positive whole number")
non_negative_int = _whole_number(0, "a whole number >= 0")
pixel_size = _whole_number(1, "a positive whole number", MAX_SIZE)
"""An argparse type: a size in pixels, 1 .. :data:`MAX_SIZE`."""


VIDEO_READ_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ogv", ".ogg", ".mpg", ".mpeg"})
"""Extensions ``nstlib stylize`` treats as videos (a test keeps them inside nstlib.video's READ_SUFFIXES)."""


def _real_number(accept, requirement: str):
    """An argparse type: ``text`` as a float for which ``accept(value)`` holds, else "must be ``requirement``"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text} must be {requirement}")
        return value

    return parse


unit_fraction = _real_number(lambda value: 0 <= value < 1, ">= 0 and < 1")
"""An argparse type: a number in [0, 1) (--blend)."""
unit_interval = _real_number(lambda value: 0 <= value <= 1, "from 0 (the content) to 1 (full style)")
"""An argparse type: a number in [0, 1] (--alpha)."""
weight = _real_number(lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")
"""An argparse type: a finite float >= 0 (loss weights)."""


def positive_float(text: str) -> float:
    """``text`` as a finite float > 0 (argparse type for learning rates)."""
    value = weight(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def _split(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list such as 256,512")
    return items


def int_list(text: str) -> list[int]:
    """``"256,512"`` as ``[256, 512]``, each > 0 (argparse type)."""
    return [positive_int(item) for item in _split(text)]


def size_list(text: str) -> list[int]:
    """``"256,512"`` as ``[256, 512]``, each a size in pixels, 1 .. :data:`MAX_SIZE` (argparse type)."""
    return [pixel_size(item) for item in _split(text)]


def steps_value(text: str) -> int | list[int]:
    """``"300"`` as 300, ``"200,100"`` as ``[200, 100]`` (one per scale); each > 0."""
    values = int_list(text)
    return values[0] if len(values) == 1 and "," not in text else values


def float_list(text: str) -> list[float]:
    """``"0.7,0.3"`` as ``[0.7, 0.3]``, each finite and >= 0 (argparse type)."""
    return [weight(item) for item in _split(text)]


def name_list(text: str) -> list[str]:
    """``"conv1_1,conv2_1"`` as ``["conv1_1", "conv2_1"]`` (argparse type)."""
    return _split(text)


# --------------------------------------------------------------------------------------
# the parser


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes (SUPPRESS: a value given before the subcommand survives)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    return common


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, wrapped at spaces only: ``coco-train2014`` or ``--style-weight`` stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose ``description`` may be a function, called when the help is shown, and
    whose help is wrapped by :class:`_Formatter` (its subcommands' parsers are of this class too).

    ``nstlib download``'s description lists the sample names, read by a module that imports torch:
    building the parser stays free of it, so ``nstlib --help`` starts in a fraction of a second.
    """

    def __init__(self, *args, formatter_class=_Formatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def format_help(self) -> str:
        if callable(self.description):
            self.description = self.description()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The ``nstlib`` argument parser with its subcommands (see the module docstring).

    Building it imports nothing heavy (no torch): each subcommand imports what it needs when it runs.
    """
    from . import __version__

    common = _common()
    parser = _Parser(
        prog="nstlib", description="Neural style transfer from the command line (the course's nstlib package).",
        epilog="Exit codes: 0 ok, 2 bad input or usage, 1 runtime failure. NSTLIB_QUICK=1 runs everything "
               "at smoke-test scale, offline. Run 'nstlib COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"nstlib {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_stylize(commands, common)
    _add_train(commands, common)
    _add_train_adain(commands, common)
    _add_download(commands, common)
    _add_batch(commands, common)
    _add_book(commands, common)
    _add_export(commands, common)
    _add_info(commands, common)
    return parser


def _add_stylize(commands, common) -> None:
    p = commands.add_parser(
        "stylize", parents=[common],
        help="stylise an image (Gatys optimisation, a fast model with --model, or AdaIN with --adain)",
        description="Stylise CONTENT. With STYLE image(s): Gatys et al.'s optimisation of the pixels. "
                    "With --model: one forward pass of a trained fast style network (Johnson et al.). "
                    "With STYLE image(s) and --adain: one forward pass of AdaIN (Huang & Belongie), which "
                    "takes any style. Images are paths, http(s) URLs or sample names.",
        epilog="Example: nstlib stylize tubingen starry_night -o out.jpg --size 512 --steps 300; "
               "nstlib stylize photo.jpg --model candy -o candy.jpg; "
               "nstlib stylize photo.jpg starry_night --adain --alpha 0.8 -o adain.jpg")
    p.add_argument("content", metavar="CONTENT", help="content image: path, URL or sample name")
    p.add_argument("styles", metavar="STYLE", nargs="*", help="style image(s); several are blended "
                   "(see --style-blend). Not with --model")
    p.add_argument("-o", "--output", metavar="OUT", help="output image (.jpg .png .webp .bmp .tif), or a folder "
                   "(existing, or ending in /) for the default name in it: CONTENT_STYLE.jpg (also with --adain; "
                   "CONTENT_MODEL.jpg with --model; file stems, sample names). Default: that name in the current "
                   "folder. An existing file needs --force")
    p.add_argument("--force", action="store_true", help="overwrite OUT (and --save-every's images) if they exist")
    p.add_argument("--model", metavar="MODEL", help="fast path: a checkpoint file (.pth from 'nstlib train' or "
                   "pytorch/examples) or a pretrained style: candy, mosaic, rain_princess, udnie")
    p.add_argument("--size", type=pixel_size, help=f"long side of the output in pixels (default {DEFAULT_SIZE}, "
                   f"at most {MAX_SIZE}; with --scales, the last scale)")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--backend", choices=("auto", "torch", "bfloat16", "onnx", "float32"), default="auto",
                   help="with --model on a CPU: auto (default: bfloat16 where the CPU computes bfloat16 natively, "
                        "else float32), torch (plain PyTorch float32), bfloat16 or float32 (the network rewritten "
                        "for the CPU), onnx (ONNX Runtime, float32; pip install \"nstlib[onnx]\")")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.add_argument_group("AdaIN (Huang & Belongie 2017: any STYLE in one forward pass; not with --model)")
    a.add_argument("--adain", nargs="?", const=ADAIN_PRETRAINED, metavar="DECODER",
                   help="stylise with AdaIN: DECODER is a .pth written by 'nstlib train-adain' or pytorch-AdaIN's "
                        "decoder.pth; without it (or with 'pretrained'), pytorch-AdaIN's released decoder, "
                        "downloaded on first use. The encoder: --adain-encoder. Write --adain "
                        "after CONTENT and STYLE (or as --adain=DECODER)")
    a.add_argument("--adain-encoder", metavar="ENCODER", help="with --adain: the encoder the decoder was trained "
                   "with: pretrained (pytorch-AdaIN's vgg_normalised.pth, the default), random (seeded random "
                   "weights, as 'train-adain --encoder random') or a vgg_normalised.pth file")
    a.add_argument("--alpha", type=unit_interval, metavar="A",
                   help="with --adain: the content-style trade-off, 0 (the content, decoded) to 1 (full style, "
                        "the default)")
    s = p.add_argument_group("Style images (Gatys optimisation and --adain)")
    s.add_argument("--preserve-color", action="store_true", help="keep the content's colours (Gatys: luminance-only "
                   "transfer; --adain: each STYLE first recoloured to the content's colour statistics, CORAL)")
    s.add_argument("--style-size", type=pixel_size, help="long side of the style image(s) (default: the output's; "
                   f"{DEFAULT_SIZE} for a video with --adain; at most {MAX_SIZE})")
    s.add_argument("--style-blend", type=float_list, metavar="LIST",
                   help="weights of several STYLE images, e.g. 0.7,0.3 (default equal)")
    v = p.add_argument_group("Video (CONTENT a video file such as in.mp4, with --model or --adain; "
                             "pip install \"nstlib[video]\")")
    v.add_argument("--blend", type=unit_fraction, default=0.0,
                   help="temporal blending with the previous stylised frame, 0 (default) to <1: less flicker, more trail")
    v.add_argument("--no-audio", action="store_true", help="drop the sound (default: copied)")
    g = p.add_argument_group("Gatys optimisation (not with --model or --adain)")
    g.add_argument("--steps", type=steps_value, help=f"loss evaluations (default {DEFAULT_STEPS}); with --scales "
                   "one value for every stage or a list such as 200,100")
    g.add_argument("--content-weight", type=weight, help="content loss weight (default 1)")
    g.add_argument("--style-weight", type=weight, help="style loss weight (default 1e6)")
    g.add_argument("--tv-weight", type=weight, help="total variation weight (default 0)")
    g.add_argument("--layers", choices=("gatys", "seed"), help="layer preset: gatys (conv4_2; conv1_1..conv5_1, "
                   "the default) or seed (the slides' conv_4; conv_1..conv_5)")
    g.add_argument("--content-layers", type=name_list, metavar="LIST",
                   help=f"content layers, comma-separated; overrides --layers. {LAYER_NAMES_HELP} "
                        f"(default: the --layers preset; gatys: {','.join(GATYS_CONTENT_LAYERS)})")
    g.add_argument("--style-layers", type=name_list, metavar="LIST",
                   help=f"style layers, comma-separated; overrides --layers. {LAYER_NAMES_HELP} "
                        f"(default: the --layers preset; gatys: {','.join(GATYS_STYLE_LAYERS)})")
    g.add_argument("--optimizer", choices=("lbfgs", "adam"), help="optimiser (default lbfgs)")
    g.add_argument("--lr", type=positive_float, help="learning rate (default 1 for lbfgs, 0.02 for adam)")
    g.add_argument("--init", metavar="INIT", help="start image: content (default), noise, or an image")
    g.add_argument("--scales", type=size_list, metavar="LIST", help="coarse-to-fine long sides, e.g. 256,512 "
                   f"(each at most {MAX_SIZE})")
    g.add_argument("--seed", type=non_negative_int, help="random seed (default 0)")
    g.add_argument("--weights", choices=("imagenet", "random"), help="VGG19 weights (default imagenet)")
    g.add_argument("--pooling", choices=("max", "avg"), help="VGG19 pooling (default max)")
    g.add_argument("--no-rescale-loss", action="store_true", help="minimise the raw weighted loss (default: the loss "
                   "divided by its first value, so tiny losses do not stall the optimiser)")
    g.add_argument("--save-every", type=positive_int, metavar="N", help="also save the image every N steps, as "
                   "OUT's name with _STEP added (out_0050.jpg; steps count across --scales)")
    g.add_argument("--print-every", type=positive_int, metavar="N",
                   help="print the step and its losses every N steps (total, content, style, tv: the raw values)")
    p.set_defaults(run=cmd_stylize)


def _add_train(commands, common) -> None:
    p = commands.add_parser(
        "train", parents=[common], help="train a fast style network (Johnson et al.) for a style",
        description="Train a TransformerNet to paint STYLE (Johnson et al. 2016) on the images of --data, "
                    "then write the model to -o with save_transform_net.",
        epilog="Example: nstlib train starry_night --data coco-val2017 --epochs 2 --checkpoint-dir ckpt "
               "-o starry.pth; then nstlib stylize photo.jpg --model starry.pth -o out.jpg")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s): path, URL or sample name "
                   "(several: their Gram targets are averaged)")
    p.add_argument("--data", required=True, metavar="DATA", help="a folder of photos, or labelme, labelme-12-50k, "
                   "coco-val2017, coco-train2014 (after 'nstlib download'), synthetic")
    p.add_argument("--max-images", type=positive_int, metavar="N", help="use only the first N images of --data")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=positive_int, help="optimiser steps")
    length.add_argument("--epochs", type=positive_int, help="passes over the data")
    p.add_argument("-o", "--output", metavar="MODEL.pth", help="where to write the trained model (.pth or .pt), "
                   "or a folder (existing, or ending in /) for the default name in it: STYLE.pth (the style's file "
                   "stem or sample name). Default: that name in the current folder. An existing file needs --force")
    p.add_argument("--force", action="store_true", help="overwrite MODEL.pth if it exists")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per step (default 4)")
    p.add_argument("--image-size", type=positive_int, default=256, help="side of the square crops (default 256)")
    p.add_argument("--style-size", type=positive_int, help="long side of the style image (default --image-size)")
    p.add_argument("--content-weight", type=weight, default=1e5, help="content loss weight (default 1e5)")
    p.add_argument("--style-weight", type=weight, default=1e10, help="style loss weight (default 1e10)")
    p.add_argument("--tv-weight", type=weight, default=0.0, help="total variation weight (default 0)")
    p.add_argument("--content-layers", type=name_list, metavar="LIST", help="content layers, comma-separated. "
                   f"{LAYER_NAMES_HELP} (default {','.join(TRAIN_CONTENT)})")
    p.add_argument("--style-layers", type=name_list, metavar="LIST", help="style layers, comma-separated. "
                   f"{LAYER_NAMES_HELP} (default {','.join(TRAIN_STYLE)})")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--upsample", choices=("nearest", "transpose"), default="nearest",
                   help="up-sampling of the network (default nearest)")
    p.add_argument("--weights", choices=("imagenet", "random"), default="imagenet",
                   help="VGG19 weights of the loss (default imagenet)")
    p.add_argument("--amp", choices=("auto", "off", "float16", "bfloat16"), default="auto",
                   help="mixed precision: auto (float16 or bfloat16 on CUDA, float32 on the CPU), off, float16 "
                        "(CUDA), bfloat16 (CUDA, or a CPU that computes bfloat16 natively)")
    _add_run_controls(p, "total, content, style, tv, lr", samples=True)
    p.set_defaults(run=cmd_train)


def _add_run_controls(p, logged: str, samples: bool = False) -> None:
    """The options ``train`` and ``train-adain`` share: checkpoints, resuming, logging, seed, device."""
    p.add_argument("--checkpoint-dir", type=Path, metavar="DIR", help="write resumable checkpoints here")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--keep-checkpoints", type=positive_int, default=3, help="newest checkpoints kept (default 3)")
    if samples:
        p.add_argument("--sample", action="append", metavar="IMAGE", dest="samples",
                       help="an image to stylise into DIR/samples/ as training goes (repeatable)")
        p.add_argument("--sample-every", type=positive_int, default=500, help="steps between samples (default 500)")
    p.add_argument("--log-every", type=positive_int, metavar="N",
                   help=f"print the step and its losses every N steps ({logged})")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir, "
                   "or start there when it holds none: the same command, run again, carries on")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="data loading processes (default 0)")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train_adain(commands, common) -> None:
    p = commands.add_parser(
        "train-adain", parents=[common], help="train an AdaIN decoder (Huang & Belongie): any style in one pass",
        description="Train the decoder of AdaIN (Huang & Belongie 2017: any painting in one forward pass) on the "
                    "photos of --data and the paintings of STYLES, with pytorch-AdaIN's frozen VGG19 encoder, "
                    "then write the decoder to -o in pytorch-AdaIN's layout: nstlib stylize --adain DECODER.pth, "
                    "nstlib.load_adain(DECODER.pth) and pytorch-AdaIN's test.py --decoder read it.",
        epilog="Example: nstlib train-adain wikiart/ --data coco-train2014 --steps 160000 --checkpoint-dir ckpt "
               "--resume -o decoder.pth (run the same command again after an interruption); then: nstlib stylize "
               "photo.jpg painting.jpg --adain decoder.pth, or in Python: "
               "nstlib.stylize_adain(nstlib.load_adain('decoder.pth'), 'photo.jpg', 'painting.jpg')")
    p.add_argument("styles", metavar="STYLES", help="a folder of style images (paintings; sub-folders searched "
                   "too), a dataset name as for --data, or synthetic (painterly stand-ins)")
    p.add_argument("--data", required=True, metavar="DATA", help="a folder of photos, or labelme, labelme-12-50k, "
                   "coco-val2017, coco-train2014 (after 'nstlib download'), synthetic")
    p.add_argument("--steps", type=positive_int, required=True, help="optimiser steps in all (pytorch-AdaIN: 160000)")
    p.add_argument("-o", "--output", metavar="DECODER.pth", help="where to write the trained decoder (.pth or .pt), "
                   f"or a folder (existing, or ending in /) for the default name in it: STYLES{ADAIN_DECODER_SUFFIX} "
                   "(the folder's name). Default: that name in the current folder. An existing file needs --force")
    p.add_argument("--force", action="store_true", help="overwrite DECODER.pth if it exists")
    p.add_argument("--batch-size", type=positive_int, default=8, help="photo-painting pairs per step (default 8)")
    p.add_argument("--image-size", type=_whole_number(ADAIN_MIN_SIZE, f"at least {ADAIN_MIN_SIZE} (relu4_1, at "
                   "1/8 of the size, needs 2x2 positions for a standard deviation)", MAX_SIZE), default=256,
                   help=f"side of the square crops (default 256, at least {ADAIN_MIN_SIZE})")
    p.add_argument("--content-weight", type=weight, default=1.0, help="content loss weight (default 1)")
    p.add_argument("--style-weight", type=weight, default=10.0, help="style loss weight (default 10)")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="Adam's learning rate (default 1e-4)")
    p.add_argument("--lr-decay", type=weight, default=5e-5, help="learning rate at step k: lr / (1 + lr-decay * k) "
                   "(default 5e-5, as pytorch-AdaIN)")
    p.add_argument("--encoder", default="pretrained", metavar="ENCODER", help="pretrained (pytorch-AdaIN's "
                   "vgg_normalised.pth, downloaded on first use; the default), random (seeded random weights: runs "
                   "offline, learns nothing useful) or a vgg_normalised.pth file")
    _add_run_controls(p, "total, content, style, lr")
    p.set_defaults(run=cmd_train_adain)


def _download_description() -> str:
    """``nstlib download``'s description, with the sample names (read when its help is shown)."""
    from .data.samples import sample_names

    return ("Fetch what the course needs into the cache (NSTLIB_CACHE) and print where it went. "
            f"NAME: a sample image ({', '.join(sample_names())}), samples (all of them), "
            "pretrained (the four fast models: candy, mosaic, rain_princess, udnie), vgg19 (ImageNet "
            "weights, into torch hub's cache), labelme (crawl; --n), coco-val2017 (815 MB), "
            "coco-train2014 (13.5 GB), labelme-12-50k. Quick mode (NSTLIB_QUICK=1) never downloads.")


def _add_download(commands, common) -> None:
    p = commands.add_parser(
        "download", parents=[common], help="fetch sample images, models, VGG19 weights or datasets",
        description=_download_description)
    p.add_argument("names", metavar="NAME", nargs="+", help="what to fetch (see above)")
    p.add_argument("--n", type=positive_int, metavar="N", help="labelme: how many images (default 20000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmd_download)


def _add_batch(commands, common) -> None:
    p = commands.add_parser(
        "batch", parents=[common], help="run a notebook over a grid of parameters (papermill)",
        description="Run a notebook over a grid of parameters with papermill, then write a comparison figure "
                    "and table (see nstlib.course.batch for the grid file).")
    p.add_argument("grids", metavar="GRID.yaml", nargs="+", type=Path, help="grid file(s)")
    p.add_argument("--workers", type=positive_int, default=1, help="runs executed in parallel (default 1)")
    p.add_argument("--output", type=Path, metavar="DIR", help="output folder (default: the grid file's 'output')")
    p.add_argument("--force", action="store_true", help="re-run runs that are already complete")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run each notebook as a task on a Dask cluster: "
                   "local:N starts N local workers; tcp://HOST:8786 or a scheduler file (.json) joins a running "
                   "one (needs pip install \"nstlib[cluster]\"; default: the local process pool)")
    p.set_defaults(run=cmd_batch)


def _add_book(commands, common) -> None:
    p = commands.add_parser(
        "book", parents=[common], help="build the course book, or refresh the notebooks' checked outputs",
        description="Maintain the course from its checkout (run inside the repository): 'build' runs the "
                    "gallery batches and renders the HTML book; 'refresh' re-executes notebooks in quick mode "
                    "and keeps only the outputs nbval checks.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", parents=[common], help="run the gallery batches and render the HTML book")
    build.add_argument("--skip-gallery", action="store_true", help="do not run the gallery batches")
    build.add_argument("--workers", type=positive_int, default=2, help="gallery runs executed in parallel (default 2)")
    build.add_argument("--path-output", type=Path, help="the HTML goes to PATH_OUTPUT/_build/html (default: book)")
    refresh = actions.add_parser("refresh", parents=[common], help="re-execute notebooks in quick mode, keep only "
                                 "checked outputs")
    refresh.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    p.set_defaults(run=cmd_book)


def _add_export(commands, common) -> None:
    p = commands.add_parser(
        "export", parents=[common], help="save a fast model for other tools: pytorch/examples or ONNX",
        description="Write MODEL (a checkpoint from 'nstlib train' or a pretrained style) in pytorch/examples' "
                    "fast_neural_style state-dict format (its names, pixels 0..255; loads into its "
                    "TransformerNet with strict=True), or as ONNX (pip install \"nstlib[onnx]\"; checked "
                    "against PyTorch with ONNX Runtime).",
        epilog="Example: nstlib export starry_night.pth --format onnx -o starry_night.onnx")
    p.add_argument("model", metavar="MODEL", help="a checkpoint file or a pretrained style name")
    p.add_argument("--format", choices=("examples", "onnx"), required=True, help="what to write")
    p.add_argument("-o", "--output", metavar="OUT", help="the file to write (default MODEL_examples.pth or MODEL.onnx)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(run=cmd_export)


def _add_info(commands, common) -> None:
    p = commands.add_parser("info", parents=[common], help="versions, device, quick mode, cache and mirror",
                            description="Print what nstlib sees: versions, the device, quick mode, the cache "
                                        "folder, the mirror, and which weights and models are cached.")
    p.set_defaults(run=cmd_info)


# --------------------------------------------------------------------------------------
# helpers


def _name_part(source: str) -> str:
    """The part of a default output name that stands for ``source``: a file's or URL's stem, a sample or
    model name; characters other than letters, digits, ``.+-_`` become ``_``."""
    stem = PurePosixPath(unquote(urlsplit(source).path)).stem if "://" in source else Path(source).stem
    return re.sub(r"[^\w.+-]+", "_", stem).strip("._") or "image"


def default_output_name(args: argparse.Namespace) -> str:
    """The file name ``-o`` defaults to: ``CONTENT_STYLE.jpg`` (styles joined by ``+``; the same with ``--adain``;
    with ``--model``, ``CONTENT_MODEL.jpg``) for ``stylize``, ``STYLE.pth`` for ``train``, ``STYLES_decoder.pth``
    for ``train-adain``."""
    if args.command == "train":
        return "+".join(_name_part(style) for style in args.styles) + MODEL_SUFFIXES[0]
    if args.command == "train-adain":
        return _name_part(args.styles) + ADAIN_DECODER_SUFFIX
    second = [args.model] if args.model is not None else args.styles
    return "_".join([_name_part(args.content), "+".join(_name_part(s) for s in second)]) + DEFAULT_IMAGE_SUFFIX


def _output_path(given: str | os.PathLike | None, default_name: str, force: bool, suffixes: tuple[str, ...]) -> Path:
    """The file ``-o`` names, checked before any work: ``default_name`` in the current folder when ``-o``
    is not given, or inside ``given`` when that is a folder (an existing one, ``.``, or a path ending in
    ``/``); then the extension, not a folder, not an existing file without --force, and a folder that
    exists or can be made and accepts a new file (:func:`_check_writable`)."""
    if given is None:
        path = Path(default_name)
    else:
        text = os.fspath(given)
        path = Path(text).expanduser()
        if text.endswith(("/", os.sep)) or path.name in ("", ".", "..") or path.is_dir():
            path = path / default_name
    if path.is_dir():
        raise UsageError(f"-o {path} is a folder (the default name {default_name} in it): name the file to write")
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"-o {path}: the extension {path.suffix or '(none)'!r} is not one of "
                         f"{' '.join(suffixes)}; name the output e.g. {path.with_suffix(suffixes[0]).name}, or "
                         f"give a folder (an existing one, or a path ending in /) to write {default_name} in it")
    if path.exists() and not force:
        raise UsageError(f"-o {path} already exists: pass --force to overwrite it, or choose another name")
    _check_writable(path)
    return path


def _check_writable(path: Path) -> None:
    """UsageError unless ``path`` can be written: its nearest existing folder (the parent, or the
    ancestor in which the missing folders will be made) accepts a temporary file, created and removed
    here. Nothing else is created, so a refused command leaves no empty folders behind."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"-o {path}: {existing} is a file, not a folder: choose another place for the output")
    try:
        handle, probe = tempfile.mkstemp(prefix=".nstlib-write-test-", dir=existing)
    except OSError as error:
        raise UsageError(f"-o {path}: cannot write in {existing} ({error.strerror or error}): choose a folder "
                         "you can write to") from error
    os.close(handle)
    os.unlink(probe)


def _is_out_of_memory(error: BaseException) -> bool:
    """True for a ``MemoryError`` and for torch's out-of-memory errors on the CPU (a RuntimeError from
    its ``DefaultCPUAllocator``), on CUDA (``torch.cuda.OutOfMemoryError``) and on MPS."""
    if isinstance(error, MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    import torch

    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or any(
        marker in text for marker in ("DefaultCPUAllocator", "not enough memory", "out of memory",
                                      "can't allocate memory"))


@contextmanager
def _memory_advice(where: str, fix: str):
    """Turn running out of memory inside the block into :class:`OutOfMemory` (one line): ``where`` names
    the settings that used it (``"--size 3000"``), ``fix`` what to reduce."""
    try:
        yield
    except Exception as error:
        if not _is_out_of_memory(error):
            raise
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        reason = re.sub(r"^\[enforce fail at [^\]]*\]\s*[^.]*\.\s*", "", first)  # torch's C++ location
        raise OutOfMemory(f"out of memory at {where} ({reason[:200]}): {fix}") from error


def _one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line library messages are joined)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def _is_a(error: BaseException, module: str, name: str) -> bool:
    """``isinstance(error, <module>.<name>)`` without importing ``module`` (nstlib's ``vgg``, or ``torch.cuda``):
    an error cannot be of a class whose module was never imported, and a usage error is reported at once."""
    loaded = sys.modules.get(module if module.startswith("torch") else f"{__package__}.{module}")
    return loaded is not None and isinstance(error, getattr(loaded, name))


def _exit_code(error: BaseException) -> int | None:
    """2 for bad input, 1 for an expected runtime failure, None for anything else (a bug)."""
    if isinstance(error, OutOfMemory):
        return EXIT_FAILURE
    if _is_a(error, "data.download", "DownloadError"):  # an OSError, but the network's fault, not the input's
        return EXIT_FAILURE
    if isinstance(error, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)):
        return EXIT_USAGE
    if isinstance(error, (FloatingPointError, OSError)) or _is_a(error, "vgg", "WeightsError") or \
            _is_a(error, "data.labelme", "CrawlError") or _is_a(error, "torch.cuda", "OutOfMemoryError"):
        return EXIT_FAILURE
    return None


CLI_SPELLINGS = {"pass weights=None": "pass --weights random (nstlib stylize, nstlib train)"}
"""How the library's advice reads on the command line: the VGG19 weights error says ``weights=None``,
the option of ``nstlib stylize`` and ``nstlib train`` is ``--weights random``."""


def _report(error: BaseException, debug: bool, prefix: str = "") -> None:
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    text = _one_line(error)
    if _is_a(error, "vgg", "WeightsError"):
        for library, command_line in CLI_SPELLINGS.items():
            text = text.replace(library, command_line)
    print(f"nstlib: error: {prefix}{text}", file=sys.stderr, flush=True)


def _size_text(image) -> str:
    return f"{image.shape[-1]}x{image.shape[-2]}"


# --------------------------------------------------------------------------------------
# stylize

_GATYS_ONLY = ("steps", "content_weight", "style_weight", "tv_weight", "layers", "content_layers", "style_layers",
               "optimizer", "lr", "init", "scales", "seed", "weights", "pooling", "no_rescale_loss", "save_every",
               "print_every")
"""``stylize``'s options (argparse names) that only Gatys optimisation takes."""

_STYLE_IMAGE_OPTIONS = ("preserve_color", "style_size", "style_blend")
"""``stylize``'s options for the STYLE images: Gatys optimisation and ``--adain`` take them, ``--model`` does not."""


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` given on the command line, spelt ``--option`` (unset they are None or False)."""
    return [f"--{name.replace('_', '-')}" for name in names
            if getattr(args, name) is not None and getattr(args, name) is not False]


def _check_stylize(args: argparse.Namespace) -> None:
    """``stylize``'s usage errors that the parser cannot see, before any work: one method and its options."""
    if args.adain is not None:
        _check_adain(args)
    elif args.alpha is not None:
        raise UsageError(f"--alpha {args.alpha:g} weighs AdaIN's style against the content: it needs --adain "
                         "(after CONTENT and STYLE)")
    elif args.adain_encoder is not None:
        raise UsageError(f"--adain-encoder {args.adain_encoder} chooses AdaIN's encoder: it needs --adain "
                         "(after CONTENT and STYLE)")
    elif args.model is not None:
        if args.styles:
            raise UsageError("--model stylises with the model alone: drop the STYLE argument(s) "
                             f"{' '.join(args.styles)}")
        for names, where in ((_GATYS_ONLY, "Gatys optimisation (a STYLE image)"),
                             (_STYLE_IMAGE_OPTIONS, "STYLE images (Gatys optimisation or --adain)")):
            if given := _given(args, names):
                raise UsageError(f"{' '.join(given)} only apply to {where}, not to --model")
    elif not args.styles:
        raise UsageError("stylize needs a STYLE image after CONTENT (or --model MODEL for a fast model)")
    elif args.backend != "auto":
        raise UsageError(f"--backend {args.backend} chooses how a fast model runs: it needs --model")


def _check_adain(args: argparse.Namespace) -> None:
    """``stylize --adain``'s usage errors: another method or its options, no STYLE, a DECODER that is no file,
    a --style-blend that does not match the STYLE images."""
    if args.model is not None:
        raise UsageError(f"--adain and --model {args.model} are two methods: give --model MODEL for a fast network "
                         "or STYLE --adain for AdaIN, not both")
    if given := _given(args, _GATYS_ONLY):
        raise UsageError(f"{' '.join(given)} only apply to Gatys optimisation, not to --adain")
    if args.backend != "auto":
        raise UsageError(f"--backend {args.backend} chooses how a fast model (--model) runs, not --adain: drop it")
    if not args.styles:
        took = "" if args.adain == ADAIN_PRETRAINED else \
            f" (--adain took {args.adain} as its DECODER file: write --adain after CONTENT and STYLE)"
        raise UsageError(f"--adain needs a STYLE image after CONTENT (any painting: AdaIN takes its style in one "
                         f"pass){took}")
    decoder = Path(args.adain).expanduser()
    if args.adain != ADAIN_PRETRAINED and not decoder.is_file():
        what = "is a folder" if decoder.is_dir() else f"no such file (the current folder is {Path.cwd()})"
        raise UsageError(f"--adain {args.adain}: {what}: give a decoder .pth written by 'nstlib train-adain' or "
                         "pytorch-AdaIN's decoder.pth, or --adain alone for the released decoder")
    _encoder_choice(args.adain_encoder, "--adain-encoder")
    if args.style_blend is not None and len(args.style_blend) != len(args.styles):
        raise UsageError(f"--style-blend has {len(args.style_blend)} weight(s) for {len(args.styles)} STYLE "
                         "image(s): give one weight per STYLE")


def cmd_stylize(args: argparse.Namespace) -> int:
    """``nstlib stylize``: Gatys optimisation, a fast model with ``--model`` or AdaIN with ``--adain``; writes
    ``-o``."""
    from .images import SAVE_FORMATS

    started = time.perf_counter()
    _check_stylize(args)
    if Path(str(args.content)).suffix.lower() in VIDEO_READ_SUFFIXES:
        if args.model is None and args.adain is None:
            raise UsageError(f"{args.content} is a video: stylise it with a fast model (--model MODEL) or with AdaIN "
                             "(STYLE --adain)")
        return _stylize_video(args, started)
    out = _output_path(args.output, default_output_name(args), args.force, tuple(SAVE_FORMATS))
    if args.adain is not None:
        return _stylize_adain(args, out, started)
    if args.model is not None:
        return _stylize_fast(args, out, started)
    return _stylize_gatys(args, out, started)


def _stylize_video(args: argparse.Namespace, started: float) -> int:
    """``nstlib stylize in.mp4 --model MODEL`` or ``in.mp4 STYLE --adain``: every frame through the fast model or
    AdaIN (:func:`nstlib.stylize_video`); the default name is ``default_output_name``'s with ``.mp4``."""
    from .config import get_device
    from .video import VIDEO_SUFFIXES, stylize_video

    default = default_output_name(args)[:-len(DEFAULT_IMAGE_SUFFIX)] + ".mp4"
    out = _output_path(args.output, default, args.force, tuple(VIDEO_SUFFIXES))
    if not Path(args.content).expanduser().is_file():
        raise UsageError(f"{args.content}: no such video file (the current folder is {Path.cwd()})")
    device = get_device(args.device)
    stylize_frame = _adain_frames(args, device) if args.adain is not None else _fast_frames(args, device)
    result = stylize_video(args.content, out, stylize_frame, blend=args.blend,
                           audio="drop" if args.no_audio else "copy", size=args.size, progress=not args.quiet)
    print(f"nstlib: wrote {out} ({result.frames} frames at {float(result.fps):g} fps, {result.width}x{result.height}, "
          f"audio {result.audio}; flicker {result.flicker_in:.4f} in, {result.flicker_out:.4f} out) "
          f"in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def _fast_frames(args: argparse.Namespace, device):
    """The frame function of ``stylize in.mp4 --model MODEL``: :func:`~nstlib.stylize_image` with the model."""
    from .fast import stylize_image

    net = _fast_model_loader(args.model, "--model", progress=not args.quiet)()
    return lambda frame: stylize_image(net, frame, device=device, backend=args.backend)


def _fast_model_loader(model: str, option: str, *, progress: bool = True):
    """Check MODEL before any work (a checkpoint file, or a pretrained style) and return a function that loads
    it as a TransformerNet; a UsageError naming ``option`` when it is neither."""
    from .checkpoints import load_transform_net
    from .data.pretrained import PRETRAINED_STYLES, load_pretrained

    path = Path(model).expanduser()
    if path.exists():
        return lambda: load_transform_net(path)
    if model not in PRETRAINED_STYLES:
        raise UsageError(f"{option} {model}: no such file (the current folder is {Path.cwd()}) and not a "
                         f"pretrained style ({', '.join(PRETRAINED_STYLES)})")
    return lambda: load_pretrained(model, progress=progress)


def _adain_model(args: argparse.Namespace, device, style_size: int):
    """``(model, style)`` for ``stylize --adain``: :func:`~nstlib.load_adain`'s model (DECODER or the released
    decoder) on ``device``, and the STYLE images loaded at ``style_size`` and encoded once
    (:func:`~nstlib.encode_style`); with ``--preserve-color``, which recolours them to each content image before
    encoding, the images themselves."""
    from .adain_model import encode_style
    from .data.adain_weights import load_adain
    from .images import load_image

    styles = [load_image(style, style_size) for style in args.styles]
    weights = ADAIN_PRETRAINED if args.adain == ADAIN_PRETRAINED else Path(args.adain).expanduser()
    encoder = _encoder_choice(args.adain_encoder, "--adain-encoder")
    model = load_adain(weights, encoder=encoder, progress=not args.quiet).to(device)
    return model, styles if args.preserve_color else encode_style(model, styles, style_size=style_size)


def _encoder_choice(value: str | None, option: str):
    """``--adain-encoder`` or ``train-adain --encoder`` as ``encoder=`` of :func:`~nstlib.load_adain`:
    "pretrained" (also when not given), "random", or the path of a vgg_normalised.pth file; a UsageError
    naming ``option`` for a file that does not exist."""
    if value is None or value in ("pretrained", "random"):
        return value or "pretrained"
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(f"{option} {value}: no such file (the current folder is {Path.cwd()}): give pretrained, "
                         "random or a vgg_normalised.pth file")
    return path


def _adain_options(args: argparse.Namespace, style_size: int) -> dict:
    """The keyword arguments of :func:`~nstlib.stylize_adain` that come from ``stylize``'s options."""
    return dict(alpha=1.0 if args.alpha is None else args.alpha, style_weights=args.style_blend,
                preserve_color=args.preserve_color, style_size=style_size if args.preserve_color else None)


def _adain_frames(args: argparse.Namespace, device):
    """The frame function of ``stylize in.mp4 STYLE --adain``: :func:`~nstlib.stylize_adain` of each frame at its
    own size, the style encoded once (style size: ``--style-size``, else ``--size``, else the default size)."""
    from .adain_model import stylize_adain

    style_size = args.style_size or args.size or DEFAULT_SIZE
    model, style = _adain_model(args, device, style_size)
    options = _adain_options(args, style_size)
    return lambda frame: stylize_adain(model, frame, style, size=max(frame.shape[-2:]), **options)


def _stylize_adain(args: argparse.Namespace, out: Path, started: float) -> int:
    """``nstlib stylize CONTENT STYLE --adain [DECODER]``: :func:`~nstlib.stylize_adain` at ``--size`` (the style
    at ``--style-size``, else the same size), written to ``out``."""
    from .adain_model import stylize_adain
    from .config import get_device
    from .images import load_image, save_image

    device = get_device(args.device)
    size = args.size or DEFAULT_SIZE
    style_size = args.style_size or size
    with _memory_advice(f"--size {size}", f"try a smaller --size, e.g. --size {max(1, size // 2)}"):
        content = load_image(args.content, size)
        model, style = _adain_model(args, device, style_size)
        result = stylize_adain(model, content, style, size=size, **_adain_options(args, style_size))
    save_image(result, out)
    decoder = "the released decoder" if args.adain == ADAIN_PRETRAINED else f"decoder {args.adain}"
    stand_in = ", quick-mode random stand-in weights" if model.metadata.get("stand_in") else ""
    print(f"nstlib: wrote {out} ({_size_text(result)}, AdaIN, {decoder}{stand_in}, alpha "
          f"{1.0 if args.alpha is None else args.alpha:g}, {device.type}) in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def _stylize_fast(args: argparse.Namespace, out: Path, started: float) -> int:
    from .images import load_image, save_image
    from .fast import stylize_image
    from .config import get_device

    load_net = _fast_model_loader(args.model, "--model", progress=not args.quiet)
    device = get_device(args.device)
    size = args.size or DEFAULT_SIZE
    with _memory_advice(f"--size {size}", f"try a smaller --size, e.g. --size {max(1, size // 2)}"):
        image = load_image(args.content, size)
        net = load_net()
        result = stylize_image(net, image, device=device, backend=args.backend)
    save_image(result, out)
    print(f"nstlib: wrote {out} ({_size_text(result)}, fast model {args.model}, {device.type}) "
          f"in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def step_path(out: Path, step: int) -> Path:
    """Where ``stylize --save-every`` writes the image of ``step``: ``out_0050.jpg`` beside ``out.jpg``."""
    return out.with_name(f"{out.stem}_{step:04d}{out.suffix}")


def _planned_steps(args: argparse.Namespace) -> int:
    """The steps ``stylize`` will run (every stage of --scales; quick mode's cap applied)."""
    from .config import cap_steps

    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    if isinstance(steps, list):
        return sum(cap_steps(n) for n in steps)
    return cap_steps(steps) * (len(args.scales) if args.scales else 1)


def _print_losses(step: int, losses: dict[str, float], keys: tuple[str, ...], seconds: float) -> None:
    """One line of ``--print-every`` / ``--log-every``: ``step 50: total 1.2e+05, content 3.4, ... (2.1 s)``
    (6 significant digits; written above a progress bar, if there is one)."""
    from tqdm import tqdm

    values = ", ".join(f"{key} {losses[key]:.6g}" for key in keys)
    tqdm.write(f"step {step}: {values} ({seconds:.1f} s)", file=sys.stdout)
    sys.stdout.flush()


def _gatys_monitor(args: argparse.Namespace, out: Path, started: float):
    """``(callback, callback_every)`` for ``stylize --save-every N`` (each image written atomically, the
    files checked first: none may exist without --force) and ``--print-every N``; ``(None, 10)`` without."""
    intervals = [n for n in (args.save_every, args.print_every) if n]
    if not intervals:
        return None, 10
    from .images import save_image

    if args.save_every:
        existing = [path for step in range(args.save_every, _planned_steps(args) + 1, args.save_every)
                    if (path := step_path(out, step)).exists()]
        if existing and not args.force:
            raise UsageError(f"--save-every {args.save_every}: {existing[0]} already exists: pass --force to "
                             "overwrite it, or choose another -o")

    def callback(step: int, image, losses: dict[str, float]) -> None:
        if args.save_every and step % args.save_every == 0:
            save_image(image, step_path(out, step))
        if args.print_every and step % args.print_every == 0:
            _print_losses(step, losses, ("total", "content", "style", "tv"), time.perf_counter() - started)

    return callback, math.gcd(*intervals)


def _stylize_gatys(args: argparse.Namespace, out: Path, started: float) -> int:
    from .images import load_image
    from .layers import LAYER_PRESETS, resolve_layers
    from .gatys import stylize
    from .config import get_device

    callback, callback_every = _gatys_monitor(args, out, started)
    preset = LAYER_PRESETS[args.layers or "gatys"]
    content_layers = resolve_layers(args.content_layers or preset["content_layers"], "--content-layers")
    style_layers = resolve_layers(args.style_layers or preset["style_layers"], "--style-layers")
    size = args.size if args.size is not None or args.scales else DEFAULT_SIZE
    init = args.init or "content"
    if init not in ("content", "noise"):
        init = load_image(init)
    device = get_device(args.device)
    if args.scales:
        where, fix = f"--scales {','.join(map(str, args.scales))}", "try smaller --scales (or fewer of them)"
    else:
        where, fix = f"--size {size}", f"try a smaller --size, e.g. --size {max(1, size // 2)}"
    with _memory_advice(where, fix):
        result = stylize(
            args.content, args.styles if len(args.styles) > 1 else args.styles[0],
            steps=args.steps if args.steps is not None else DEFAULT_STEPS,
            content_weight=1.0 if args.content_weight is None else args.content_weight,
            style_weight=1e6 if args.style_weight is None else args.style_weight,
            tv_weight=0.0 if args.tv_weight is None else args.tv_weight,
            content_layers=content_layers, style_layers=style_layers,
            optimizer=args.optimizer or "lbfgs", lr=args.lr, init=init, size=size, style_size=args.style_size,
            scales=args.scales, style_blend_weights=args.style_blend, preserve_color=args.preserve_color,
            seed=args.seed or 0, device=device, weights=None if args.weights == "random" else "imagenet",
            pooling=args.pooling or "max", progress=not args.quiet, rescale_loss=not args.no_rescale_loss,
            callback=callback, callback_every=callback_every,
        )
    result.save(out)
    steps = len(result.history["total"])
    print(f"nstlib: wrote {out} ({_size_text(result.image)}, Gatys, {steps} steps, total loss "
          f"{result.final_losses().get('total', float('nan')):.4g}, {device.type}) "
          f"in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


# --------------------------------------------------------------------------------------
# train


def _train_monitor(every: int | None, keys: tuple[str, ...] = ("total", "content", "style", "tv", "lr")):
    """The callback of ``train --log-every N`` and ``train-adain --log-every N`` (a line of ``keys`` every
    N steps), or None."""
    if every is None:
        return None

    def callback(step: int, losses: dict[str, float], *samples) -> None:
        if step % every == 0:
            _print_losses(step, losses, keys, losses["seconds"])

    return callback


def cmd_train(args: argparse.Namespace) -> int:
    """``nstlib train``: :func:`~nstlib.train_transform_net`, then the model to ``-o`` (save_transform_net)."""
    from .data.datasets import open_dataset
    from .training import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, train_transform_net

    started = time.perf_counter()
    out = _output_path(args.output, default_output_name(args), args.force, MODEL_SUFFIXES)
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir DIR (the folder the checkpoints were written to)")
    if args.samples and args.checkpoint_dir is None:
        raise UsageError("--sample needs --checkpoint-dir DIR (the samples are written to DIR/samples/)")
    data = open_dataset(args.data, args.image_size, n=args.max_images)
    with _memory_advice(f"--batch-size {args.batch_size} and --image-size {args.image_size}",
                        "try a smaller --batch-size or --image-size"):
        result = train_transform_net(
            args.styles if len(args.styles) > 1 else args.styles[0], data,
            steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
            content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
            content_layers=args.content_layers or DEFAULT_CONTENT_LAYERS,
            style_layers=args.style_layers or DEFAULT_STYLE_LAYERS,
            lr=args.lr, upsample=args.upsample, weights=None if args.weights == "random" else "imagenet",
            style_size=args.style_size, device=args.device,
            amp={"auto": True, "off": False}.get(args.amp, args.amp),
            checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
            keep_checkpoints=args.keep_checkpoints, sample_every=args.sample_every, sample_images=args.samples,
            resume="auto" if args.resume else False, seed=args.seed, num_workers=args.num_workers,
            progress=not args.quiet, log_every=args.log_every or 10, callback=_train_monitor(args.log_every),
        )
    result.save(out)  # rank 0 only under torchrun
    if getattr(result, "rank", 0) != 0:
        return EXIT_OK
    losses = result.final_losses()
    loss = f", final loss {losses['total']:.4g}" if "total" in losses else ""
    where = f"; checkpoints in {args.checkpoint_dir}" if args.checkpoint_dir is not None else ""
    print(f"nstlib: wrote {out} ({result.steps} steps on {len(data)} images{loss}, {result.settings['device']}) "
          f"in {time.perf_counter() - started:.1f} s{where}")
    return EXIT_OK


def _check_image_source(source: str, option: str) -> None:
    """UsageError unless ``source`` is a dataset name or an existing folder holding images (before any work)."""
    from .data.datasets import DATASETS, IMAGE_EXTENSIONS, list_images

    if source in DATASETS:
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"{option} {source}: no such folder (the current folder is {Path.cwd()}): give a folder of "
                         f"images, or one of {', '.join(DATASETS)}")
    if not path.is_dir():
        raise UsageError(f"{option} {source} is a file, not a folder: give the folder that holds the images")
    if not list_images(path):
        raise UsageError(f"{option} {source} holds no images ({' '.join(IMAGE_EXTENSIONS)}; sub-folders searched "
                         "too): put images in it, or give another folder")


def _check_train_adain(args: argparse.Namespace) -> None:
    """``train-adain``'s arguments that the parser cannot check alone: UsageErrors naming the option and the fix."""
    from .checkpoints import step_files

    _check_image_source(args.styles, "STYLES")
    _check_image_source(args.data, "--data")
    _encoder_choice(args.encoder, "--encoder")
    folder = args.checkpoint_dir
    if args.resume and folder is None:
        raise UsageError("--resume needs --checkpoint-dir DIR (the folder the checkpoints are written to)")
    if folder is not None and folder.expanduser().exists() and not folder.expanduser().is_dir():
        raise UsageError(f"--checkpoint-dir {folder} is a file: give a folder (it is created if missing)")
    if folder is not None and not args.resume and step_files(folder.expanduser()):
        raise UsageError(f"--checkpoint-dir {folder} already holds checkpoints of a run: add --resume to continue "
                         "it, or choose another folder (or delete them) to start afresh")


def cmd_train_adain(args: argparse.Namespace) -> int:
    """``nstlib train-adain``: :func:`~nstlib.train_adain_decoder`, then the decoder to ``-o``
    (:func:`~nstlib.data.adain_weights.save_adain_decoder`, pytorch-AdaIN's layout)."""
    from .adain_training import train_adain_decoder

    started = time.perf_counter()
    out = _output_path(args.output, default_output_name(args), args.force, MODEL_SUFFIXES)
    _check_train_adain(args)
    with _memory_advice(f"--batch-size {args.batch_size} and --image-size {args.image_size}",
                        "try a smaller --batch-size or --image-size"):
        result = train_adain_decoder(
            args.data, args.styles, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
            content_weight=args.content_weight, style_weight=args.style_weight, lr=args.lr, lr_decay=args.lr_decay,
            encoder=args.encoder, device=args.device, checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
            log_every=args.log_every or 10, callback=_train_monitor(args.log_every, ("total", "content", "style", "lr")),
            resume="auto" if args.resume else False, seed=args.seed, num_workers=args.num_workers,
            progress=not args.quiet,
        )
    result.save(out)
    settings, history = result.settings, result.history
    loss = f", final loss {history['total'][-1]:.4g}" if history["total"] else ""
    where = f"; checkpoints in {args.checkpoint_dir}" if args.checkpoint_dir is not None else ""
    print(f"nstlib: wrote {out} (AdaIN decoder, {result.steps} steps on {settings['content_length']} photos and "
          f"{settings['style_length']} style images{loss}, {settings['device']}) in "
          f"{time.perf_counter() - started:.1f} s{where}")
    return EXIT_OK


# --------------------------------------------------------------------------------------
# download


VGG19_FILE = "vgg19-dcbb9e9d.pth"
"""The file name of ``torchvision.models.VGG19_Weights.IMAGENET1K_V1`` in torch hub's cache, written out:
importing torchvision.models takes seconds, ``nstlib info`` only needs the name (a test compares)."""


def _vgg19_file() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def _pretrained_files() -> list[Path]:
    from .data.pretrained import MODELS_FOLDER, PRETRAINED_STYLES, pretrained_dir

    return [pretrained_dir() / MODELS_FOLDER / f"{style}.pth" for style in PRETRAINED_STYLES]


def _quick_skip(name: str) -> str:
    return f"{name}: not downloaded: quick mode (NSTLIB_QUICK=1) never uses the network; unset it to download"


def _fetch(name: str, args: argparse.Namespace) -> str:
    """Fetch one download ``name``; returns the line to print."""
    from .data import datasets, labelme
    from . import config
    from .data.samples import fetch_sample, get_sample

    progress = not args.quiet
    if name == "vgg19":
        path = _vgg19_file()
        if config.quick_mode():
            return f"vgg19: {path} (already cached)" if path.is_file() else _quick_skip(name)
        from .vgg import load_vgg19_state

        load_vgg19_state("imagenet", progress=progress)
        return f"vgg19: {path}"
    if name == "pretrained":
        files = _pretrained_files()
        if config.quick_mode() and not all(p.is_file() for p in files):
            return _quick_skip(name)
        from .data.pretrained import PRETRAINED_STYLES, fetch_pretrained

        for style in PRETRAINED_STYLES:
            fetch_pretrained(style, progress=progress)
        return f"pretrained: {files[0].parent} ({', '.join(p.name for p in files)})"
    if name in ("labelme", "coco-val2017", "coco-train2014", "labelme-12-50k"):
        if name == "labelme":
            folder = labelme.download_labelme(n=args.n or 20000, progress=progress)
        elif name == "labelme-12-50k":
            folder = datasets.download_labelme_12_50k(progress=progress)
        else:
            folder = datasets.download_coco(name.removeprefix("coco-"), progress=progress)
        count = len(datasets.list_images(folder)) if folder.is_dir() else 0
        if config.quick_mode() and count == 0:
            return _quick_skip(name)
        return f"{name}: {count} images in {folder}"
    sample = get_sample(name)
    path = fetch_sample(sample.name, progress=progress)
    if path.parent.name == "standins" and config.quick_mode():
        return f"{sample.name}: {path} (quick mode: a synthetic stand-in, not the real image)"
    return f"{sample.name}: {path}"


def cmd_download(args: argparse.Namespace) -> int:
    """``nstlib download``: fetch each NAME (checked first), print where it went; exit 1 if any failed."""
    from .data.samples import get_sample, is_sample, sample_names

    wanted: list[str] = []
    unknown: list[str] = []
    for raw in args.names:
        name = raw.strip().lower()
        if name == "samples":
            wanted += sample_names()
        elif name in DOWNLOAD_GROUPS:
            wanted.append(name)
        elif is_sample(name):
            wanted.append(get_sample(name).name)
        else:
            unknown.append(raw)
    if unknown:
        raise UsageError(f"unknown download name(s): {', '.join(unknown)}. Valid names: "
                         f"{', '.join(DOWNLOAD_GROUPS)}, or a sample image: {', '.join(sample_names())}")
    if args.n is not None and "labelme" not in wanted:
        raise UsageError("--n applies to labelme only: add labelme to the names or drop --n")
    failed = 0
    wanted = list(dict.fromkeys(wanted))
    for name in wanted:
        try:
            print(_fetch(name, args), flush=True)
        except Exception as error:
            if _exit_code(error) != EXIT_FAILURE:  # bad input (exit 2) and bugs stop everything
                raise
            _report(error, getattr(args, "debug", False), prefix=f"{name}: ")
            failed += 1
    if failed:
        if len(wanted) > 1:
            print(f"nstlib: {failed} of {len(wanted)} downloads failed", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# --------------------------------------------------------------------------------------
# batch and info


def cmd_batch(args: argparse.Namespace) -> int:
    """``nstlib batch``: runs the grid file(s) with :func:`nstlib.course.batch.run_arguments`; a Dask
    cluster that cannot be used (``--scheduler``: Dask missing, no scheduler there) is exit code 1."""
    from .course.batch import run_arguments
    from .course.cluster import ClusterError

    try:
        return run_arguments(args)
    except ClusterError as error:
        _report(error, bool(getattr(args, "debug", False)))
        return EXIT_FAILURE


def cmd_book(args: argparse.Namespace) -> int:
    """``nstlib book build|refresh`` (:mod:`nstlib.course.book`); a failed build is exit code 1."""
    from .course.batch import GridError
    from .course.book import build, notebook_paths, refresh

    if args.action == "refresh":
        refresh(args.notebooks or notebook_paths())
        return EXIT_OK
    try:
        return build(gallery=not args.skip_gallery, workers=args.workers, path_output=args.path_output)
    except (RuntimeError, FileNotFoundError, GridError) as error:
        _report(error, bool(getattr(args, "debug", False)))
        return EXIT_FAILURE


def info_lines() -> list[tuple[str, str]]:
    """``(label, value)`` pairs that ``nstlib info`` prints."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from . import __version__, config, cpu_memory
    from .config import get_device
    from .fast import cpu_backend

    quick_text = "on (NSTLIB_QUICK=1: tiny sizes, random weights, offline)" if config.quick_mode() else "off"
    try:
        torchvision_version = version("torchvision")
    except PackageNotFoundError:
        torchvision_version = "not installed"
    device = get_device()
    if device.type == "cuda":
        device_text = f"cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "mps":
        device_text = "mps (Apple GPU)"
    else:
        device_text = "cpu (no GPU found; on Colab: Runtime > Change runtime type > GPU)"
    chosen = cpu_backend()
    cache = config.cache_dir()
    vgg = _vgg19_file()
    pretrained = _pretrained_files()
    images = cache / "images"
    cached_images = sum(1 for p in images.rglob("*") if p.is_file()) if images.is_dir() else 0
    return [
        ("nstlib", f"{__version__} ({Path(__file__).resolve().parent})"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", f"{torch.__version__}, torchvision {torchvision_version}"),
        ("device", device_text),
        ("quick mode", quick_text),
        ("cache", f"{cache}" + ("" if cache.is_dir() else " (not created yet)") + f" [{config.ENV_CACHE}]"),
        ("mirror", f"{config.mirror() or '(none)'} [{config.ENV_MIRROR}]"),
        ("results", f"{config.results_dir()} [{config.ENV_RESULTS}]"),
        ("sample images", f"{cached_images} cached in {images}"),
        ("vgg19 weights", f"{'cached' if vgg.is_file() else 'not cached'}: {vgg}"),
        ("pretrained models", f"{sum(p.is_file() for p in pretrained)} of {len(pretrained)} cached in "
                              f"{pretrained[0].parent}"),
        ("fast path on cpu", f"backend {chosen!r} for backend='auto' ({_CPU_BACKEND_REASONS[chosen]})"),
        ("freed memory", f"{cpu_memory.describe()} [{cpu_memory.ENVIRONMENT_VARIABLE}]"),
    ]


_CPU_BACKEND_REASONS = {
    "bfloat16": "this CPU multiplies bfloat16 natively",
    "float32": "no native bfloat16: the network rewritten for the CPU, in float32",
}
"""Why :func:`nstlib.fast.cpu_backend` picks each backend (the first available of ``AUTO_ORDER``), for ``nstlib info``."""


def cmd_export(args: argparse.Namespace) -> int:
    """``nstlib export``: a model in pytorch/examples' format or as ONNX (:mod:`nstlib.export`)."""
    from .checkpoints import save_examples_format

    suffix = ".onnx" if args.format == "onnx" else ".pth"
    default = _name_part(args.model) + ("" if args.format == "onnx" else "_examples") + suffix
    out = _output_path(args.output, default, args.force, (suffix,))
    net = _fast_model_loader(args.model, "MODEL")()
    if args.format == "onnx":
        from .export import export_onnx

        export_onnx(net, out)
    else:
        save_examples_format(net, out)
    print(f"nstlib: wrote {out} ({args.format} format of {args.model})")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """``nstlib info``: versions, device, quick mode, cache, mirror, what is cached."""
    lines = info_lines()
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label + ':':<{width + 1}} {value}")
    return EXIT_OK


# --------------------------------------------------------------------------------------
# entry point


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the flush at exit does not fail a second time."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the ``nstlib`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Never calls ``sys.exit`` itself (argparse's exits for ``--help`` and usage errors are
    turned into the return value), so tests and notebooks can call it.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (EXIT_OK if stop.code is None else EXIT_USAGE)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("nstlib: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (nstlib info | head): stop quietly
        _silence_stdout()
        return EXIT_FAILURE
    except Exception as error:
        code = _exit_code(error)
        if code is None:
            raise
        _report(error, debug)
        return code


if __name__ == "__main__":
    sys.exit(main())
