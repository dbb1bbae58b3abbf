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
(:func:`stylize_image` does). ``output="tanh"`` (the slides' Tanh) returns
``(tanh(y) + 1) / 2``, always inside [0, 1].

``pixel_scale`` ``s`` lets a network trained on 0..255 pixels (pytorch/examples'
pretrained models) take and return [0, 1] images: ``forward(x) = head(net(s x) / s)``,
where ``head`` is the identity or the tanh map above. :mod:`nstlib.pretrained` sets
``s = 255``; networks trained in this course keep ``s = 1``.

Checkpoints: :func:`save_transform_net` / :func:`load_transform_net` (see
:func:`load_transform_net` for every layout it accepts).
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .fileio import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "ConvLayer",
    "MIN_SIZE",
    "ResidualBlock",
    "TransformerNet",
    "UpsampleConvLayer",
    "count_parameters",
    "load_transform_net",
    "pad_to_multiple",
    "save_transform_net",
    "stylize_image",
    "stylize_images",
]

MIN_SIZE = 16
"""Smallest height and width (pixels) :class:`TransformerNet` accepts."""

MULTIPLE = 4
"""Inputs are reflection-padded to a multiple of this (two stride-2 layers), then cropped back."""

NUM_RESIDUAL = 5
"""Residual blocks in the middle of the network."""

UPSAMPLE_MODES = ("nearest", "transpose")
OUTPUT_MODES = ("none", "tanh")

CHECKPOINT_FORMAT = "nstlib.transform_net"
"""Value of the ``"format"`` key of a checkpoint written by :func:`save_transform_net`."""

CHECKPOINT_VERSION = 1
"""Version written by :func:`save_transform_net`; :func:`load_transform_net` reads versions <= this."""


class CheckpointError(ValueError):
    """A file that is not a usable TransformerNet checkpoint; the message names the file and the fix."""


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


# --------------------------------------------------------------------------------------
# inference


def _as_batch(image: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{what} must be a tensor [3, H, W] or [1, 3, H, W] in [0, 1] "
                        f"(nstlib.images.load_image makes one), got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"{what} must be [3, H, W] or [1, 3, H, W], got shape {tuple(image.shape)}; "
                         "for several images use stylize_images")
    if not image.is_floating_point():
        raise ValueError(f"{what} has dtype {image.dtype}: pass floats in [0, 1] (divide uint8 images by 255)")
    low, high = float(image.min()), float(image.max())
    if low < -1e-3 or high > 1 + 1e-3 or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{what} has values in [{low:.4g}, {high:.4g}], expected [0, 1] "
                         "(an image in 0..255 must be divided by 255)")
    return image


def _net_device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def _net_dtype(net: nn.Module) -> torch.dtype:
    for p in net.parameters():
        return p.dtype
    return torch.float32


def _run(net: nn.Module, batch: torch.Tensor, device: torch.device, dtype: torch.dtype | None,
         channels_last: bool) -> torch.Tensor:
    """``net(batch)`` on ``device`` without gradients, optionally under autocast; float32 on the CPU, clamped."""
    batch = batch.to(device=device, dtype=_net_dtype(net))
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    if dtype is None or dtype == torch.float32:
        out = net(batch)
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            out = net(batch)
    return out.float().clamp_(0, 1).cpu()


def _prepare(net: nn.Module, device, channels_last: bool) -> tuple[torch.device, bool]:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a TransformerNet (an nn.Module), got {type(net).__name__}")
    device = _net_device(net) if device is None else torch.device(device)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    was_training = net.training
    net.eval()
    return device, was_training


def stylize_image(net: nn.Module, image: torch.Tensor, *, device=None, dtype: torch.dtype | None = None,
                  channels_last: bool = False) -> torch.Tensor:
    """Run ``net`` on one image: ``clamp(net(image), 0, 1)`` as a ``[1, 3, H, W]`` float32 CPU tensor.

    ``image`` is ``[3, H, W]`` or ``[1, 3, H, W]`` with values in [0, 1] (a clear error for
    0..255 values). The result is on the CPU, ready for :func:`nstlib.images.save_image` and
    plotting, whatever device ran the network (one small copy per image).

    Args:
        device: where to run; ``None`` uses the device of ``net``'s parameters. The network
            is moved there in place (``net.to(device)``, as PyTorch modules do).
        dtype: ``torch.float16`` / ``torch.bfloat16`` runs under :func:`torch.autocast`
            (the weights stay float32; on the CPU, bfloat16 is the useful one); ``None``
            or ``torch.float32`` runs in float32.
        channels_last: convert the network (in place) and the input to the channels-last
            memory format, often faster on GPUs with tensor cores; the values do not change.

    Runs without gradients in eval mode and restores the network's training mode afterwards.
    """
    image = _as_batch(image, "image")
    device, was_training = _prepare(net, device, channels_last)
    try:
        with torch.no_grad():
            return _run(net, image, device, dtype, channels_last)
    finally:
        net.train(was_training)


def stylize_images(net: nn.Module, images: torch.Tensor | Sequence[torch.Tensor], *, batch_size: int = 4,
                   device=None, dtype: torch.dtype | None = None, channels_last: bool = False,
                   progress: bool = False) -> torch.Tensor | list[torch.Tensor]:
    """Stylise many images, batching those of equal size; same options as :func:`stylize_image`.

    ``images`` is either a batch tensor ``[B, 3, H, W]`` (returns ``[B, 3, H, W]``) or a list
    of ``[3, H, W]`` / ``[1, 3, H, W]`` tensors of any sizes (returns a list of ``[1, 3, H, W]``
    in the same order). Images of the same size run together, ``batch_size`` at a time.
    Because instance normalisation works per image, the result equals stylising each image
    alone (up to floating-point rounding). Results are clamped float32 CPU tensors.
    """
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    as_tensor = isinstance(images, torch.Tensor)
    if as_tensor:
        if images.dim() != 4:
            raise ValueError(f"images must be [B, 3, H, W] or a list of images, got shape {tuple(images.shape)}")
        items = [images[i:i + 1] for i in range(images.shape[0])]
    elif isinstance(images, Iterable) and not isinstance(images, (str, bytes)):
        items = list(images)
    else:
        raise TypeError(f"images must be a tensor [B, 3, H, W] or a list of image tensors, got {type(images).__name__}")
    items = [_as_batch(image, f"images[{i}]") for i, image in enumerate(items)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(items):
        groups.setdefault(tuple(image.shape[-2:]), []).append(i)
    results: list[torch.Tensor | None] = [None] * len(items)
    device, was_training = _prepare(net, device, channels_last)
    try:
        with torch.no_grad(), tqdm(total=len(items), desc="stylize", unit="img", disable=not progress) as bar:
            for indices in groups.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    out = _run(net, torch.cat([items[i] for i in chunk]), device, dtype, channels_last)
                    for j, i in enumerate(chunk):
                        results[i] = out[j:j + 1]
                    bar.update(len(chunk))
    finally:
        net.train(was_training)
    if as_tensor:
        return torch.cat(results) if results else images.new_zeros((0, 3) + tuple(images.shape[-2:])).cpu()
    return results


# --------------------------------------------------------------------------------------
# checkpoints


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` holds only tensors, numbers, strings, None, lists/tuples, str-keyed dicts."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}: keys must be strings")
            _check_plain(item, f"{where}[{key!r}]")
        return
    hint = " (convert it with str())" if isinstance(value, os.PathLike) else ""
    raise TypeError(f"{where} is a {type(value).__name__}{hint}: checkpoints hold only tensors, numbers, "
                    "strings, None, lists and dicts, so that torch.load(weights_only=True) can read them")


def save_transform_net(net: TransformerNet, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``net`` to ``path`` atomically and return ``Path(path)``.

    The file is ``torch.save`` of the dict ``{"format": "nstlib.transform_net", "version": 1,
    "config": net.config, "state_dict": {name: CPU tensor}, "metadata": metadata}``. It holds
    only tensors, numbers, strings, lists and dicts (``metadata`` is checked: anything else
    raises ``TypeError``), so it loads with ``torch.load(path, weights_only=True)``. It is
    written to a temporary file in the same folder and moved onto ``path`` with
    :func:`os.replace`: ``path`` is either the old file or the complete new one.
    """
    if not isinstance(net, TransformerNet):
        raise TypeError(f"net must be a TransformerNet, got {type(net).__name__}")
    _check_plain(metadata, "metadata")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder: pass the file to write, e.g. {path / 'model.pth'}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": net.config,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "metadata": dict(metadata),
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


_EXPECTED = (
    "a TransformerNet checkpoint: a file written by nstlib's save_transform_net, a training checkpoint "
    "dict with 'config' and 'model' (or 'state_dict'), or a state dict of pytorch/examples' "
    "fast_neural_style TransformerNet (keys conv1.conv2d.weight ...)"
)


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix carried by every key."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _short(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    text = ", ".join(keys[:limit])
    return text + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _build(config: Any, source: str) -> TransformerNet:
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: 'config' is a {type(config).__name__}, expected a dict like "
                              f"{TransformerNet().config}")
    unknown = set(config) - {"upsample", "base", "output", "pixel_scale"}
    if unknown:
        raise CheckpointError(f"{source}: config has unknown keys {sorted(unknown)}; TransformerNet takes "
                              "upsample, base, output and pixel_scale (was it written by a newer nstlib?)")
    try:
        return TransformerNet(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: config {config!r} does not describe a TransformerNet: {error}") from error


def _load_weights(net: TransformerNet, state: dict[str, Any], source: str) -> TransformerNet:
    state = _strip_prefix(state)
    expected = net.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"{source}: the weights do not match TransformerNet(**{net.config}) ("
                              + "; ".join(parts) + "). Is it a checkpoint of another model or of another "
                              "architecture (upsample / base)?")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
           if not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{source}: tensor shapes do not match TransformerNet(**{net.config}) "
                              f"(file vs model): {_short(bad, 4)}")
    net.load_state_dict(state)
    return net


def _from_object(obj: Any, source: str) -> TransformerNet:
    """Build a TransformerNet from what ``torch.load`` returned (see :func:`load_transform_net`)."""
    if isinstance(obj, dict) and "format" in obj:
        if obj["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{source}: format {obj['format']!r} is not {CHECKPOINT_FORMAT!r}; expected {_EXPECTED}")
        version = obj.get("version")
        if not isinstance(version, int) or version > CHECKPOINT_VERSION or version < 1:
            raise CheckpointError(f"{source}: checkpoint version {version!r} is not supported (this nstlib reads "
                                  f"versions 1..{CHECKPOINT_VERSION}): upgrade nstlib")
        if "config" not in obj or "state_dict" not in obj:
            raise CheckpointError(f"{source}: the checkpoint lacks 'config' or 'state_dict' (truncated or "
                                  "hand-edited?): save it again with save_transform_net")
        net = _load_weights(_build(obj["config"], source), obj["state_dict"], source)
        metadata = obj.get("metadata") or {}
    elif isinstance(obj, dict) and "config" in obj and ("model" in obj or "state_dict" in obj):
        state = obj["model"] if "model" in obj else obj["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: its 'model' / 'state_dict' is a {type(state).__name__}, expected "
                                  "a state dict (name -> tensor)")
        net = _load_weights(_build(obj["config"], source), state, source)
        metadata = obj.get("metadata") or {}
    elif _is_state_dict(obj) and "conv1.conv2d.weight" in _strip_prefix(obj):
        from .pretrained import convert_examples_state_dict  # lazy: pretrained imports this module

        try:
            state = convert_examples_state_dict(_strip_prefix(obj))
        except ValueError as error:
            raise CheckpointError(f"{source}: looks like a pytorch/examples state dict but {error}") from error
        base = int(state["down.0.conv.weight"].shape[0])
        net = _load_weights(TransformerNet(upsample="nearest", base=base, pixel_scale=255.0), state, source)
        metadata = {"source": "pytorch/examples fast_neural_style"}
    elif _is_state_dict(obj) and "down.0.conv.weight" in _strip_prefix(obj):
        raise CheckpointError(f"{source} is a bare TransformerNet state dict without its config (upsample, "
                              "output, pixel_scale cannot all be read from the weights). Load it with "
                              "net = TransformerNet(...same arguments as in training...); "
                              "net.load_state_dict(torch.load(path, weights_only=True)), then save it with "
                              "save_transform_net(net, path), which stores the config too")
    else:
        if isinstance(obj, dict):
            what = f"a dict with keys {_short(map(str, obj))}"
        else:
            what = f"a {type(obj).__name__}"
        raise CheckpointError(f"{source} holds {what}; expected {_EXPECTED}")
    if not isinstance(metadata, dict):
        metadata = {"metadata": metadata}
    net.metadata = dict(metadata)
    return net.eval()


def load_transform_net(path: str | os.PathLike, map_location: Any = "cpu") -> TransformerNet:
    """Load a :class:`TransformerNet` from ``path`` (always ``torch.load(weights_only=True)``), in eval mode.

    Accepted layouts (a dict, checked in this order):

    1. ``{"format": "nstlib.transform_net", "version": 1, "config": ..., "state_dict": ...,
       "metadata": ...}`` written by :func:`save_transform_net`;
    2. a training checkpoint ``{"config": net.config, "model": state_dict, ...}`` (or
       ``"state_dict"`` instead of ``"model"``); other keys (optimiser, RNG states, step,
       ``"metadata"``) are ignored here;
    3. a raw state dict of pytorch/examples' ``fast_neural_style`` network
       (``conv1.conv2d.weight``, ...), converted by
       :func:`nstlib.pretrained.convert_examples_state_dict` into
       ``TransformerNet(upsample="nearest", pixel_scale=255)``, so it takes [0, 1] images.

    A ``module.`` or ``_orig_mod.`` prefix on every weight name (DataParallel, torch.compile)
    is removed. The checkpoint's ``metadata`` dict is kept as ``net.metadata``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: (a ``ValueError``) ``path`` is a folder, not a PyTorch file, truncated,
            holds pickled Python objects, or holds the weights of another model; the message
            names the file and what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; expected {_EXPECTED}")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in {".pth", ".pt", ".ckpt"})
        hint = f" (it contains {', '.join(inside[:5])}: pass one of those)" if inside else ""
        raise CheckpointError(f"{path} is a folder{hint}; expected a file holding {_EXPECTED}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"{path} holds pickled Python objects, which are not loaded for safety (weights_only=True); "
                f"expected {_EXPECTED}. If it is a whole model saved with torch.save(model) by a source you "
                "trust, re-save its state_dict or use save_transform_net") from error
        raise CheckpointError(f"{path} is not a readable PyTorch file ({error}); expected {_EXPECTED}. "
                              "If it was downloaded, the download may be incomplete: delete it and fetch it again") from error
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch file ({type(error).__name__}: {error}); "
                              f"expected {_EXPECTED}. It may be truncated (an interrupted download or copy) "
                              "or another kind of file: delete it and fetch or save it again") from error
    return _from_object(obj, str(path))
