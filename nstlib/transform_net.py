"""Johnson et al.'s image transformation network for fast style transfer.

:class:`TransformerNet` is the feed-forward network of Johnson, Alahi & Fei-Fei (2016),
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution", with instance
normalisation (Ulyanov et al. 2016) instead of batch normalisation, as in the course's
Transform Net slides and in pytorch/examples' ``fast_neural_style``::

    down  : conv 9x9 stride 1 -> base      (IN, ReLU)
            conv 3x3 stride 2 -> 2 base    (IN, ReLU)
            conv 3x3 stride 2 -> 4 base    (IN, ReLU)
    res   : 5 x [x + IN(conv3x3(ReLU(IN(conv3x3(x)))))]       (4 base channels)
    up    : x2 up-sampling -> 2 base       (IN, ReLU)
            x2 up-sampling -> base         (IN, ReLU)
    final : conv 9x9 stride 1 -> 3         (no norm, no ReLU)

Every ordinary convolution is preceded by reflection padding of ``kernel_size // 2``
(no zero borders, so no dark frame). Two ways of up-sampling are offered:

* ``upsample="nearest"`` (default): nearest-neighbour x2 resize, reflection pad 1,
  3x3 convolution. This is pytorch/examples' layout, and it avoids the checkerboard
  artifacts of transposed convolutions (Odena, Dumoulin & Olah 2016, "Deconvolution
  and Checkerboard Artifacts").
* ``upsample="transpose"``: the slides' ``ConvTranspose2d(kernel 3, stride 2,
  padding 1, output_padding 1)``, which maps ``H`` to ``2 H``. A transposed
  convolution pads nothing (its ``padding=1`` trims the output instead).

Both have the same number of parameters: 1,679,235 at the default width ``base=32``.

Images. Input is ``[B, 3, H, W]`` in [0, 1] (the course's single convention), with
``H, W >= 16``. The output has exactly the input's height and width: the input is
reflection-padded on the right and bottom to a multiple of 4 (the two stride-2 layers
halve it twice), run through the network, and the result is cropped back. With
``output="none"`` (default, pytorch/examples) the last layer is linear, so the output is
only *approximately* in [0, 1]: clamp it before displaying or saving
(:func:`nstlib.stylize_image` does). ``output="tanh"`` (the slides' Tanh) returns
``(tanh(y) + 1) / 2``, always inside [0, 1].

``pixel_scale`` ``s`` lets a network trained on 0..255 pixels (pytorch/examples'
pretrained models) take and return [0, 1] images: ``forward(x) = head(net(s x) / s)``,
where ``head`` is the identity or the tanh map above. :mod:`nstlib.data.pretrained` sets
``s = 255``; networks trained in this course keep ``s = 1``.

Running a trained network on photos is :mod:`nstlib.fast`; saving and loading one is
:mod:`nstlib.checkpoints`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvLayer",
    "MIN_SIZE",
    "ResidualBlock",
    "TransformerNet",
    "UpsampleConvLayer",
    "count_parameters",
    "pad_to_multiple",
]

MIN_SIZE = 16
"""Smallest height and width (pixels) :class:`TransformerNet` accepts."""

MULTIPLE = 4
"""Inputs are reflection-padded to a multiple of this (two stride-2 layers), then cropped back."""

NUM_RESIDUAL = 5
"""Residual blocks in the middle of the network."""

UPSAMPLE_MODES = ("nearest", "transpose")
OUTPUT_MODES = ("none", "tanh")


# --------------------------------------------------------------------------------------
# layers


class ConvLayer(nn.Module):
    """``ReLU(IN(conv(reflection_pad(x))))``: reflection pad ``kernel_size // 2``, then a convolution.

    ``norm=False`` drops the instance norm and ``relu=False`` the ReLU (both are then
    identities). The output of a stride-``s`` layer on an ``H``-pixel input has
    ``floor((H - 1) / s) + 1`` pixels (``H`` for stride 1, ``H / 2`` for even ``H``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 norm: bool = True, relu: bool = True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True) if norm else nn.Identity()
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with two 3x3 reflection-padded convolutions (He et al. 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class UpsampleConvLayer(nn.Module):
    """Doubles height and width, then ``ReLU(IN(.))``.

    ``mode="nearest"``: nearest-neighbour x2 resize, reflection pad 1, 3x3 convolution.
    ``mode="transpose"``: ``ConvTranspose2d(kernel 3, stride 2, padding 1, output_padding 1)``,
    whose output has ``(H - 1) * 2 - 2 + 3 + 1 = 2 H`` pixels.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest"):
        super().__init__()
        if mode == "nearest":
            self.resize = nn.Upsample(scale_factor=2, mode="nearest")
            self.pad = nn.ReflectionPad2d(1)
            self.conv = nn.Conv2d(in_channels, out_channels, 3)
        elif mode == "transpose":
            self.resize = nn.Identity()
            self.pad = nn.Identity()
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        else:
            raise ValueError(f"mode={mode!r} must be one of {UPSAMPLE_MODES}")
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(self.pad(self.resize(x)))))


# --------------------------------------------------------------------------------------
# the network


class TransformerNet(nn.Module):
    """Johnson et al.'s transformation network (see the module docstring for the layout).

    Args:
        upsample: ``"nearest"`` (resize + conv, pytorch/examples) or ``"transpose"``
            (the slides' ``ConvTranspose2d``).
        base: channels after the first layer (32 in the paper); the widths are
            ``base, 2 base, 4 base`` going down and back up.
        output: ``"none"`` (linear last layer, output approximately in [0, 1]) or
            ``"tanh"`` (``(tanh(y) + 1) / 2``, always in [0, 1]).
        pixel_scale: ``s`` in ``forward(x) = head(net(s x) / s)``; 255 for networks
            trained on 0..255 pixels, 1 otherwise. May be changed after construction.

    Attributes:
        config: the arguments above as a dict; ``TransformerNet(**net.config)`` rebuilds
            the architecture.
        metadata: a dict; :func:`load_transform_net` fills it with the checkpoint's metadata.

    ``forward(x)`` takes ``[B, 3, H, W]`` in [0, 1] with ``H, W >= 16`` and returns a tensor
    of the same shape (see the module docstring for the padding and the range).
    """

    def __init__(self, upsample: str = "nearest", base: int = 32, output: str = "none", pixel_scale: float = 1.0):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample={upsample!r} must be one of {UPSAMPLE_MODES}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output={output!r} must be one of {OUTPUT_MODES}")
        if not isinstance(base, numbers.Integral) or isinstance(base, bool) or base < 1:
            raise ValueError(f"base={base!r} must be a positive integer (32 in Johnson et al.)")
        self.upsample = upsample
        self.base = int(base)
        self.output = output
        self.pixel_scale = pixel_scale  # checked by the property setter
        self.metadata: dict[str, Any] = {}
        b = self.base
        self.down = nn.Sequential(
            ConvLayer(3, b, 9),
            ConvLayer(b, 2 * b, 3, stride=2),
            ConvLayer(2 * b, 4 * b, 3, stride=2),
        )
        self.res = nn.Sequential(*[ResidualBlock(4 * b) for _ in range(NUM_RESIDUAL)])
        self.up = nn.Sequential(
            UpsampleConvLayer(4 * b, 2 * b, upsample),
            UpsampleConvLayer(2 * b, b, upsample),
        )
        self.final = ConvLayer(b, 3, 9, norm=False, relu=False)

    @property
    def pixel_scale(self) -> float:
        """``s`` in ``forward(x) = head(net(s x) / s)`` (a positive float)."""
        return self._pixel_scale

    @pixel_scale.setter
    def pixel_scale(self, value: float) -> None:
        if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
                or value <= 0):
            raise ValueError(f"pixel_scale={value!r} must be a positive number: 1 for [0, 1] training, "
                             "255 for networks trained on 0..255 pixels")
        self._pixel_scale = float(value)

    @property
    def config(self) -> dict[str, Any]:
        """``{"upsample", "base", "output", "pixel_scale"}``: ``TransformerNet(**config)`` rebuilds the net."""
        return {"upsample": self.upsample, "base": self.base, "output": self.output,
                "pixel_scale": self.pixel_scale}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input must be [batch, 3, height, width] in [0, 1], got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height < MIN_SIZE or width < MIN_SIZE:
            raise ValueError(f"input is {height}x{width} px but TransformerNet needs at least "
                             f"{MIN_SIZE}x{MIN_SIZE}: resize the image up (nstlib.images.resize)")
        s = self.pixel_scale
        y = pad_to_multiple(x * s if s != 1.0 else x, MULTIPLE)
        y = self.final(self.up(self.res(self.down(y))))
        y = y[..., :height, :width]
        if s != 1.0:
            y = y / s
        if self.output == "tanh":
            y = (torch.tanh(y) + 1) / 2
        return y


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    """Reflection-pad ``x`` on the right and bottom so height and width are multiples of ``multiple``.

    Adds ``(-H) mod multiple`` rows and ``(-W) mod multiple`` columns (nothing when they
    already are multiples). Reflection needs ``H, W > multiple - 1`` pixels.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")


def count_parameters(module: nn.Module) -> int:
    """The number of scalar parameters of ``module`` (``sum(p.numel())``)."""
    return sum(p.numel() for p in module.parameters())
