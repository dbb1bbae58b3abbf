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

Many styles in one network (Dumoulin, Shlens & Kudlur 2017, "A Learned Representation for
Artistic Style"). ``TransformerNet(num_styles=N)`` shares every convolution between ``N`` styles
and gives each style its own instance-norm scale and shift: every instance norm becomes a
:class:`ConditionalInstanceNorm2d` holding ``gamma, beta`` of shape ``[N, C]``::

    CIN(x; w) = (sum_s w_s gamma_s) * (x - mean(x)) / sqrt(var(x) + eps) + (sum_s w_s beta_s)

``forward(x, style=s)`` takes a style index ``s`` (``w`` one-hot), a length-``N`` weight vector
``w`` (a blend: the scales and shifts are mixed with the weights as given, so weights summing
to 1 make a convex blend), or a ``[B, N]`` tensor (one weight vector per image); the default is
style 0. An extra style costs ``2 * sum of normalised channels = 2 * 50 base`` parameters (3,200
at ``base=32``, 0.19% of 1,679,235); ``num_styles=None`` is the ordinary one-style network above.

Running a trained network on photos is :mod:`nstlib.fast`; saving and loading one is
:mod:`nstlib.checkpoints`; training a multi-style network, :mod:`nstlib.multistyle`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConditionalInstanceNorm2d",
    "ConvLayer",
    "MIN_SIZE",
    "ResidualBlock",
    "TransformerNet",
    "UpsampleConvLayer",
    "count_parameters",
    "pad_to_multiple",
    "style_weights",
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


class ConditionalInstanceNorm2d(nn.Module):
    """Instance normalisation with one scale and shift per style (Dumoulin et al. 2017).

    ``InstanceNorm2d(affine=False)``, then ``gamma * x + beta`` with ``gamma = w @ self.gamma`` and
    ``beta = w @ self.beta`` (parameters ``[num_styles, channels]``, initialised to 1 and 0 as
    ``InstanceNorm2d(affine=True)``). ``forward(x, style)``: ``style`` is an int index (row
    ``style`` of ``gamma`` and ``beta``), a ``[num_styles]`` weight vector shared by the batch, or
    a ``[B, num_styles]`` tensor of weights per image.
    """

    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.num_styles = num_styles
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(self, x: torch.Tensor, style: int | torch.Tensor = 0) -> torch.Tensor:
        if isinstance(style, torch.Tensor) and style.dim() == 2:  # one blend per image
            gamma, beta = style @ self.gamma, style @ self.beta
            return self.norm(x) * gamma[:, :, None, None] + beta[:, :, None, None]
        if isinstance(style, torch.Tensor):
            gamma, beta = style @ self.gamma, style @ self.beta
        else:
            gamma, beta = self.gamma[style], self.beta[style]
        # one scale and shift for the whole batch: exactly InstanceNorm2d(affine=True) holding them
        return F.instance_norm(x, weight=gamma, bias=beta, eps=self.norm.eps)

    def extra_repr(self) -> str:
        return f"num_styles={self.num_styles}"


def _norm(channels: int, num_styles: int | None) -> nn.Module:
    """``InstanceNorm2d(affine=True)`` for one style, :class:`ConditionalInstanceNorm2d` for several."""
    if num_styles is None:
        return nn.InstanceNorm2d(channels, affine=True)
    return ConditionalInstanceNorm2d(channels, num_styles)


def _normalise(norm: nn.Module, x: torch.Tensor, style) -> torch.Tensor:
    if isinstance(norm, ConditionalInstanceNorm2d):
        return norm(x, 0 if style is None else style)
    return norm(x)


class ConvLayer(nn.Module):
    """``ReLU(IN(conv(reflection_pad(x))))``: reflection pad ``kernel_size // 2``, then a convolution.

    ``norm=False`` drops the instance norm and ``relu=False`` the ReLU (both are then
    identities); ``num_styles=N`` makes the norm a :class:`ConditionalInstanceNorm2d`. The output
    of a stride-``s`` layer on an ``H``-pixel input has ``floor((H - 1) / s) + 1`` pixels (``H``
    for stride 1, ``H / 2`` for even ``H``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 norm: bool = True, relu: bool = True, num_styles: int | None = None):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.norm = _norm(out_channels, num_styles) if norm else nn.Identity()
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        return self.relu(_normalise(self.norm, self.conv(self.pad(x)), style))


class ResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with two 3x3 reflection-padded convolutions (He et al. 2016)."""

    def __init__(self, channels: int, num_styles: int | None = None):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, num_styles=num_styles)
        self.conv2 = ConvLayer(channels, channels, 3, relu=False, num_styles=num_styles)

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        return x + self.conv2(self.conv1(x, style), style)


class UpsampleConvLayer(nn.Module):
    """Doubles height and width, then ``ReLU(IN(.))``.

    ``mode="nearest"``: nearest-neighbour x2 resize, reflection pad 1, 3x3 convolution.
    ``mode="transpose"``: ``ConvTranspose2d(kernel 3, stride 2, padding 1, output_padding 1)``,
    whose output has ``(H - 1) * 2 - 2 + 3 + 1 = 2 H`` pixels.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest", num_styles: int | None = None):
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
        self.norm = _norm(out_channels, num_styles)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        return self.relu(_normalise(self.norm, self.conv(self.pad(self.resize(x))), style))


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
        num_styles: None (one style, plain instance norms) or ``N >= 1`` styles sharing the
            convolutions, each with its own norm scales and shifts
            (:class:`ConditionalInstanceNorm2d`; see the module docstring).

    Attributes:
        config: the arguments above as a dict; ``TransformerNet(**net.config)`` rebuilds
            the architecture.
        metadata: a dict; :func:`load_transform_net` fills it with the checkpoint's metadata.

    ``forward(x, style=None)`` takes ``[B, 3, H, W]`` in [0, 1] with ``H, W >= 16`` and returns a
    tensor of the same shape (see the module docstring for the padding and the range). ``style``
    (multi-style networks only): an index, a length-``N`` weight vector or ``[B, N]`` weights
    (:func:`style_weights`); None means style 0.
    """

    def __init__(self, upsample: str = "nearest", base: int = 32, output: str = "none", pixel_scale: float = 1.0,
                 num_styles: int | None = None):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample={upsample!r} must be one of {UPSAMPLE_MODES}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output={output!r} must be one of {OUTPUT_MODES}")
        if not isinstance(base, numbers.Integral) or isinstance(base, bool) or base < 1:
            raise ValueError(f"base={base!r} must be a positive integer (32 in Johnson et al.)")
        if num_styles is not None and (not isinstance(num_styles, numbers.Integral) or isinstance(num_styles, bool)
                                       or num_styles < 1):
            raise ValueError(f"num_styles={num_styles!r} must be None (one style) or a positive integer")
        self.num_styles = None if num_styles is None else int(num_styles)
        self.upsample = upsample
        self.base = int(base)
        self.output = output
        self.pixel_scale = pixel_scale  # checked by the property setter
        self.metadata: dict[str, Any] = {}
        b, n = self.base, self.num_styles
        self.down = nn.Sequential(
            ConvLayer(3, b, 9, num_styles=n),
            ConvLayer(b, 2 * b, 3, stride=2, num_styles=n),
            ConvLayer(2 * b, 4 * b, 3, stride=2, num_styles=n),
        )
        self.res = nn.Sequential(*[ResidualBlock(4 * b, n) for _ in range(NUM_RESIDUAL)])
        self.up = nn.Sequential(
            UpsampleConvLayer(4 * b, 2 * b, upsample, n),
            UpsampleConvLayer(2 * b, b, upsample, n),
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
        """``{"upsample", "base", "output", "pixel_scale"}``, plus ``"num_styles"`` for a multi-style
        net: ``TransformerNet(**config)`` rebuilds the net."""
        config = {"upsample": self.upsample, "base": self.base, "output": self.output,
                  "pixel_scale": self.pixel_scale}
        if self.num_styles is not None:
            config["num_styles"] = self.num_styles
        return config

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input must be [batch, 3, height, width] in [0, 1], got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height < MIN_SIZE or width < MIN_SIZE:
            raise ValueError(f"input is {height}x{width} px but TransformerNet needs at least "
                             f"{MIN_SIZE}x{MIN_SIZE}: resize the image up (nstlib.images.resize)")
        if self.num_styles is None and style is not None:
            raise ValueError("style= needs a multi-style network, TransformerNet(num_styles=N); this one has one style")
        if self.num_styles is not None:
            style = style_weights(style, self.num_styles, x.shape[0], self.final.conv.weight)
        s = self.pixel_scale
        y = pad_to_multiple(x * s if s != 1.0 else x, MULTIPLE)
        for layer in (*self.down, *self.res, *self.up):
            y = layer(y, style)
        y = self.final(y)[..., :height, :width]
        if s != 1.0:
            y = y / s
        if self.output == "tanh":
            y = (torch.tanh(y) + 1) / 2
        return y


def style_weights(style, num_styles: int, batch: int, like: torch.Tensor | None = None) -> int | torch.Tensor:
    """``style`` checked for a network of ``num_styles`` styles and ``batch`` images.

    Returns an int index (None gives 0), or a float tensor of weights: ``[num_styles]`` for one
    blend shared by the batch, ``[batch, num_styles]`` for one per image (on ``like``'s device and
    dtype). A ValueError names what is wrong.
    """
    if style is None:
        return 0
    if isinstance(style, numbers.Integral) and not isinstance(style, bool):
        if not 0 <= style < num_styles:
            raise ValueError(f"style={style} is not a style index of this network: use 0 .. {num_styles - 1}")
        return int(style)
    try:
        weights = torch.as_tensor(style, dtype=torch.float32 if like is None else like.dtype,
                                  device=None if like is None else like.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"style={style!r} must be an index, {num_styles} weights or a [batch, {num_styles}] "
                         "tensor") from None
    wanted = [(num_styles,), (batch, num_styles)]
    if tuple(weights.shape) not in wanted:
        raise ValueError(f"style has shape {tuple(weights.shape)}: give an index 0 .. {num_styles - 1}, "
                         f"{num_styles} weights (a blend) or a [{batch}, {num_styles}] tensor (one blend per image)")
    if not torch.isfinite(weights).all():
        raise ValueError(f"style weights {weights.tolist()} must be finite numbers")
    return weights


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
