"""Huang & Belongie (2017): arbitrary style transfer in real time with adaptive instance normalisation.

Gatys et al. optimise every image; Johnson et al. train one network per style. AdaIN trains one
decoder for *every* style. A fixed encoder ``f`` (VGG19 up to ``relu4_1``) maps the content image
``c`` and the style image ``s`` to features; AdaIN gives the content features the style's
channel-wise mean and standard deviation::

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)        per image and channel

    mu(x)    = 1/(HW) sum_{h,w} x[h, w]
    sigma(x) = sqrt( 1/(HW - 1) sum_{h,w} (x[h, w] - mu(x))^2 + eps )   (eps = 1e-5)

and the decoder ``g`` turns the result back into an image:
``T(c, s, alpha) = g((1 - alpha) f(c) + alpha AdaIN(f(c), f(s)))``. ``alpha`` trades content (0)
for style (1); several styles blend as ``sum_k w_k AdaIN(f(c), f(s_k))`` with ``sum_k w_k = 1``.

The layout is exactly that of naoto0804/pytorch-AdaIN's ``net.py`` (the ``vgg`` and ``decoder``
``nn.Sequential`` stacks, same indices), so its released ``vgg_normalised.pth`` and
``decoder.pth`` load unchanged (:mod:`nstlib.data.adain_weights`):

* encoder: a 1x1 convolution (index 0), then VGG19's 3x3 convolutions, each after a
  ``ReflectionPad2d(1)`` and followed by a ReLU, with ``MaxPool2d(2, 2, ceil_mode=True)``
  between blocks; ``relu1_1, relu2_1, relu3_1, relu4_1`` end at indices 3, 10, 17, 30, and AdaIN
  uses the first 31 modules (the full file holds 53, up to ``relu5_4``);
* decoder: the mirror image, nearest-neighbour ``Upsample(2)`` instead of pooling, no ReLU after
  the last convolution (29 modules).

**Input convention.** pytorch-AdaIN's ``test.py`` feeds ``transforms.ToTensor()`` images: **RGB
in [0, 1]**, no normalisation. The pretrained encoder's first 1x1 convolution does the Caffe
preprocessing itself (the original Torch code "inserts a convolutional module at the beginning
to preprocess the image"): it scales to 0..255, reorders RGB to BGR and subtracts the ImageNet
mean pixel as its bias. The decoder answers in the same RGB [0, 1] space (unclamped). So every
function here takes and returns RGB images in [0, 1], like the rest of nstlib.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import config
from .images import load_image, resize
from .layers import VGG19_BLOCKS

__all__ = [
    "AdaINModel",
    "DECODER_MODULES",
    "ENCODER_LAYERS",
    "ENCODER_MODULES",
    "EncodedStyle",
    "FULL_ENCODER_MODULES",
    "MIN_SIZE",
    "adain",
    "adain_decoder",
    "adain_encoder",
    "calc_mean_std",
    "check_layout",
    "coral",
    "encode_style",
    "stylize_adain",
]

ENCODER_LAYERS = {"relu1_1": 4, "relu2_1": 11, "relu3_1": 18, "relu4_1": 31}
"""Where each layer used by AdaIN ends: ``encoder[:n]`` maps the image to it (pytorch-AdaIN's ``Net``)."""

ENCODER_MODULES = 31
"""Modules of the AdaIN encoder (image to ``relu4_1``): pytorch-AdaIN's ``vgg[:31]``."""

FULL_ENCODER_MODULES = 53
"""Modules of the whole ``vgg_normalised`` stack (image to ``relu5_4``), as stored in its file."""

DECODER_MODULES = 29
"""Modules of the decoder."""

MIN_SIZE = 16
"""Smallest image side accepted: ``relu4_1`` (1/8 scale, pooling rounds up) then has at least 2x2 positions."""

_DECODER_PLAN = ((512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
                 (128, 128), (128, 64), "up", (64, 64), (64, 3))


# ---- the operation ---------------------------------------------------------------------------------------

def calc_mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise ``(mu, sigma)`` of ``[B, C, H, W]`` features, each ``[B, C, 1, 1]``.

    ``mu = mean over (H, W)``; ``sigma = sqrt(var + eps)`` with the unbiased variance
    ``sum (x - mu)^2 / (HW - 1)``, as pytorch-AdaIN computes it (the paper divides by ``HW``; the
    two differ by the factor ``sqrt(HW / (HW - 1))``, under 1 % once ``HW >= 50``).
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be a [batch, channels, height, width] tensor, got {shape}")
    if not (isinstance(eps, numbers.Real) and eps >= 0):
        raise ValueError(f"eps={eps!r} must be a number >= 0")
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    if flat.shape[-1] < 2:
        raise ValueError(f"features of shape {tuple(features.shape)} have one position per channel: a standard "
                         f"deviation needs at least two (use images of at least {MIN_SIZE} px)")
    var = flat.var(dim=2, unbiased=True) + eps
    return flat.mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def adain(content_features: torch.Tensor, style_features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: ``sigma(s) * (c - mu(c)) / sigma(c) + mu(s)`` per channel.

    ``content_features`` ``[B, C, H, W]`` and ``style_features`` ``[B or 1, C, h, w]`` (any size:
    only its statistics are used; a batch of one is applied to every content image). ``mu`` and
    ``sigma`` are :func:`calc_mean_std` with ``eps``. With ``eps=0`` the result's channel means and
    standard deviations equal the style's exactly.
    """
    if not isinstance(style_features, torch.Tensor) or not isinstance(content_features, torch.Tensor):
        raise TypeError("content_features and style_features must be tensors [batch, channels, height, width]")
    if style_features.dim() == 4 and content_features.dim() == 4 and (
            style_features.shape[1] != content_features.shape[1]
            or style_features.shape[0] not in (1, content_features.shape[0])):
        raise ValueError(f"content_features {tuple(content_features.shape)} and style_features "
                         f"{tuple(style_features.shape)} must have the same channels, and the style a batch of 1 "
                         "or of the content's size")
    style_mean, style_std = calc_mean_std(style_features, eps)
    content_mean, content_std = calc_mean_std(content_features, eps)
    return (content_features - content_mean) / content_std * style_std + style_mean


def coral(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``source`` recoloured to the RGB mean and covariance of ``target`` (CORAL, Sun et al. 2016).

    For pixels ``x`` (3-vectors) with means ``mu_s, mu_t`` and covariances ``S, T``::

        x' = T^(1/2) S^(-1/2) (x - mu_s) + mu_t        (S, T regularised as S + eps I, T + eps I)

    so ``x'`` has mean ``mu_t`` and covariance ``T`` (up to ``eps``). pytorch-AdaIN's
    ``--preserve_color`` applies this to the *style* image with the content image as target
    before the transfer, so the stylised result keeps the content's colours. Images are
    ``[3, H, W]`` or ``[1, 3, H, W]`` (sizes may differ); the result has ``source``'s shape and is
    not clamped.
    """
    def pixels(image: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or image.shape[-3] != 3 or (
                image.dim() == 4 and image.shape[0] != 1):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"{name} must be one RGB image [3, H, W] or [1, 3, H, W], got {shape}")
        return image.reshape(3, -1).double()

    def sqrt_and_inverse(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, vectors = torch.linalg.eigh(matrix)
        values = values.clamp_min(eps)
        return (vectors * values.sqrt()) @ vectors.T, (vectors * values.rsqrt()) @ vectors.T

    xs, xt = pixels(source, "source"), pixels(target, "target")
    identity = torch.eye(3, dtype=torch.float64, device=xs.device)
    mu_s, mu_t = xs.mean(1, keepdim=True), xt.mean(1, keepdim=True)
    _, s_inv_sqrt = sqrt_and_inverse(torch.cov(xs) + eps * identity)
    t_sqrt, _ = sqrt_and_inverse(torch.cov(xt) + eps * identity)
    out = t_sqrt @ s_inv_sqrt @ (xs - mu_s) + mu_t
    return out.to(source.dtype).reshape(source.shape)


# ---- the networks ----------------------------------------------------------------------------------------

def adain_encoder(full: bool = False) -> nn.Sequential:
    """pytorch-AdaIN's ``vgg`` stack: the first :data:`ENCODER_MODULES` modules (image to ``relu4_1``),
    or all :data:`FULL_ENCODER_MODULES` (to ``relu5_4``) with ``full=True``.

    Index 0 is ``Conv2d(3, 3, 1)`` (the preprocessing, see the module docstring); then per VGG19
    block ``[ReflectionPad2d(1), Conv2d(in, out, 3), ReLU()]`` for each convolution, with
    ``MaxPool2d(2, 2, 0, ceil_mode=True)`` before blocks 2 to 5. Weights get PyTorch's default
    initialisation (load a state dict into them).
    """
    modules: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    channels = 3
    for block, widths in enumerate(VGG19_BLOCKS):
        if block:
            modules.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
        for width in widths:
            modules += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(channels, width, (3, 3)), nn.ReLU()]
            channels = width
    assert len(modules) == FULL_ENCODER_MODULES
    return nn.Sequential(*modules[: None if full else ENCODER_MODULES])


def adain_decoder() -> nn.Sequential:
    """pytorch-AdaIN's ``decoder`` stack (:data:`DECODER_MODULES` modules): ``relu4_1`` features to an image.

    Each convolution is ``[ReflectionPad2d(1), Conv2d(in, out, 3), ReLU()]`` (no ReLU after the
    last, 64 to 3 channels); ``Upsample(scale_factor=2, mode="nearest")`` follows the first
    convolution, the fifth (256 to 128) and the seventh (128 to 64). Default initialisation.
    """
    modules: list[nn.Module] = []
    for step in _DECODER_PLAN:
        if step == "up":
            modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            modules += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(step[0], step[1], (3, 3)), nn.ReLU()]
    modules.pop()  # the output convolution has no ReLU
    assert len(modules) == DECODER_MODULES
    return nn.Sequential(*modules)


def check_layout(module: nn.Module, state: Mapping[str, Any], what: str, *,
                 allowed_extra: Mapping[str, torch.Size] | None = None) -> dict[str, torch.Tensor]:
    """``state`` reduced to ``module``'s keys after checking names and shapes; ValueError otherwise.

    A ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix on every key is removed.
    Every key of ``module.state_dict()`` must be present with the same shape; extra keys are
    allowed only when listed in ``allowed_extra`` with their shape (the encoder file's layers past
    ``relu4_1``). The message names ``what``, the missing, unexpected and mis-shaped keys.
    """
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{what} is a {type(state).__name__}, not a state dict (layer name -> tensor)")
    state = dict(state)
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    expected = {k: v.shape for k, v in module.state_dict().items()}
    extra = dict(allowed_extra or {})
    missing = sorted(set(expected) - set(state), key=_key_order)
    unexpected = sorted(set(state) - set(expected) - set(extra), key=_key_order)
    shapes = {**extra, **expected}
    bad = [f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} instead of "
           f"{tuple(shapes[k])}" for k, v in state.items()
           if k in shapes and not (isinstance(v, torch.Tensor) and v.shape == shapes[k])]
    if missing or unexpected or bad:
        parts = [f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", bad)) if items]
        raise ValueError(f"{what} does not have the layout of naoto0804/pytorch-AdaIN's net.py ("
                         + "; ".join(parts) + ")")
    return {k: state[k] for k in expected}


def _key_order(key: str) -> tuple:
    head, _, rest = key.partition(".")
    return (int(head), rest) if head.isdigit() else (math.inf, key)


class AdaINModel(nn.Module):
    """The AdaIN network: a frozen encoder (image to ``relu4_1``) and a trainable decoder.

    ``encoder`` and ``decoder`` default to freshly built :func:`adain_encoder` /
    :func:`adain_decoder` stacks (random weights; :func:`nstlib.load_adain` loads trained ones).
    The encoder never trains: its parameters do not require gradients and it stays in eval mode.
    ``model(content, style, alpha)`` is ``g((1 - alpha) f(c) + alpha AdaIN(f(c), f(s)))``, unclamped.
    """

    def __init__(self, encoder: nn.Sequential | None = None, decoder: nn.Sequential | None = None):
        super().__init__()
        self.encoder = adain_encoder() if encoder is None else encoder
        self.decoder = adain_decoder() if decoder is None else decoder
        if len(self.encoder) > ENCODER_MODULES:  # a full vgg_normalised stack: AdaIN stops at relu4_1
            self.encoder = nn.Sequential(*list(self.encoder.children())[:ENCODER_MODULES])
        self.encoder.requires_grad_(False)
        self.metadata: dict[str, Any] = {}

    def train(self, mode: bool = True) -> "AdaINModel":
        """Only the decoder changes mode; the encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """``relu4_1`` features of RGB images in [0, 1]."""
        return self.encoder(image)

    def encode_with_intermediate(self, image: torch.Tensor) -> list[torch.Tensor]:
        """``[relu1_1, relu2_1, relu3_1, relu4_1]`` features (the style loss's layers), in one pass."""
        out, start = [], 0
        for end in ENCODER_LAYERS.values():
            image = self.encoder[start:end](image)
            out.append(image)
            start = end
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """The decoder: ``relu4_1``-shaped features to an (unclamped) RGB image."""
        return self.decoder(features)

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        content_features = self.encode(content)
        target = adain(content_features, self.encode(style))
        return self.decode(alpha * target + (1 - alpha) * content_features)


# ---- stylising images ------------------------------------------------------------------------------------

def _as_images(source: Any, size: int | None, what: str) -> torch.Tensor:
    """``source`` as ``[B, 3, H, W]`` in [0, 1]: a batch tensor as it is (resized), anything else via load_image."""
    if isinstance(source, torch.Tensor) and source.dim() == 4 and source.shape[0] > 1:
        if source.shape[1] != 3 or not source.is_floating_point():
            raise ValueError(f"{what} has shape {tuple(source.shape)} and dtype {source.dtype}: expected float "
                             "images [B, 3, H, W] in [0, 1]")
        low, high = float(source.min()), float(source.max())
        if not (low >= -1e-3 and high <= 1 + 1e-3):
            raise ValueError(f"{what} has values in [{low:.4g}, {high:.4g}], expected [0, 1]")
        images = resize(source.detach().float().clamp(0, 1), config.cap_size(size))
    else:
        images = load_image(source, size)
    if min(images.shape[-2:]) < MIN_SIZE:
        raise ValueError(f"{what} is {images.shape[-2]}x{images.shape[-1]} px: AdaIN needs at least {MIN_SIZE} px on "
                         "each side (relu4_1 is 1/8 of the image); use a larger image or size")
    return images


def _style_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """The interpolation weights normalised to sum to 1 (equal when None)."""
    if weights is None:
        return [1.0 / count] * count
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != count:
        raise ValueError(f"style_weights={weights!r} must be a list of {count} numbers, one per style image")
    values = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (0 <= w < math.inf):
            raise ValueError(f"style_weights={list(weights)!r} must hold finite numbers >= 0")
        values.append(float(w))
    total = sum(values)
    if total <= 0:
        raise ValueError(f"style_weights={list(weights)!r} must not all be zero")
    return [w / total for w in values]


@dataclass(frozen=True, eq=False)
class EncodedStyle:
    """Style images already through the encoder (:func:`encode_style`), for :func:`stylize_adain`.

    AdaIN needs of a style only its ``relu4_1`` features ``f(s)``; a real-time application with a fixed
    style computes them once and then runs only ``f(c)``, AdaIN and the decoder per frame, about half
    the work at equal content and style sizes. ``features``: one ``[1, 512, h, w]`` tensor per style
    image, in order; ``encoder``: the encoder that computed them (:func:`stylize_adain` refuses another
    model's). Features computed before the encoder's weights change in place are stale: encode again.
    """

    features: tuple[torch.Tensor, ...]
    encoder: nn.Module


def encode_style(model: AdaINModel, style: Any, *, style_size: int | None = None) -> EncodedStyle:
    """Run ``model``'s encoder once on ``style`` (one image or a list, loaded at ``style_size`` as
    :func:`stylize_adain` loads them) and keep the features: ``stylize_adain(model, content, encoded)``
    then gives exactly ``stylize_adain(model, content, style, style_size=style_size)`` without encoding
    the style again (``style_weights`` and ``alpha`` still apply per call; ``preserve_color`` cannot,
    as it recolours the style images to each content first)."""
    images = _style_images(style, style_size)
    with torch.no_grad():
        features = tuple(model.encode(image.to(next(model.parameters()).device)) for image in images)
    return EncodedStyle(features, model.encoder)


def _style_list(style: Any) -> list:
    """``style`` (one style image, or a list or tuple of them) as a non-empty list."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise ValueError("style is an empty list: give at least one style image")
    return styles


def _style_images(style: Any, style_size: int | None) -> list[torch.Tensor]:
    """One ``[1, 3, H, W]`` image per style image (``style``: one or a list), loaded at ``style_size``."""
    images = [_as_images(s, style_size, f"style[{i}]") for i, s in enumerate(_style_list(style))]
    if any(img.shape[0] != 1 for img in images):
        raise ValueError("each style image must be a single image: pass several styles as a list")
    return images


def _check_encoded(model: AdaINModel, style: EncodedStyle, preserve_color: bool, style_size: int | None) -> None:
    """An :class:`EncodedStyle` is this model's, without the options that apply only to style images."""
    if style.encoder is not model.encoder:
        raise ValueError("style was encoded by another model's encoder: use encode_style(model, ...) with this model")
    if preserve_color:
        raise ValueError("preserve_color=True recolours the style images to the content before encoding them: "
                         "pass the style images themselves, not an EncodedStyle")
    if style_size is not None:
        raise ValueError(f"style_size={style_size} applies when the style is encoded: pass it to encode_style")


def stylize_adain(model: AdaINModel, content: Any, style: Any, *, alpha: float = 1.0,
                  style_weights: Sequence[float] | None = None, preserve_color: bool = False,
                  size: int | None = None, style_size: int | None = None) -> torch.Tensor:
    """Stylise ``content`` with any ``style`` in one forward pass; ``[B, 3, H, W]`` in [0, 1] on the CPU.

    ``content``: anything :func:`nstlib.load_image` takes (path, URL, sample name, tensor), or a
    batch tensor ``[B, 3, H, W]`` in [0, 1]; ``size`` resizes it (longer side; None keeps it).
    ``style``: one image or a list of images (loaded at ``style_size``, default ``size``).
    ``alpha`` in [0, 1]: ``t = alpha * sum_k w_k AdaIN(f(c), f(s_k)) + (1 - alpha) f(c)``, the
    result is ``clamp(g(t), 0, 1)`` cropped to the content's size (pooling rounds sizes up to a
    multiple of 8). ``style_weights``: one number >= 0 per style image, normalised to sum 1
    (default equal); a one-hot list gives that style alone. ``preserve_color``: each style image is
    first recoloured to the content's colour statistics (:func:`coral`; with a batch of contents,
    to the first one's). Runs without gradients on the model's device; the model's mode is restored.

    A fixed style need not be encoded at every call: ``style`` may be an :class:`EncodedStyle`
    from :func:`encode_style` (same result; then without ``style_size`` and ``preserve_color``).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha!r} must be a number from 0 (content only) to 1 (full style)")
    encoded = isinstance(style, EncodedStyle)
    if encoded:
        _check_encoded(model, style, preserve_color, style_size)
    weights = _style_weights(style_weights, len(style.features) if encoded else len(_style_list(style)))
    images = _as_images(content, size, "content")
    if not encoded:
        style_images = _style_images(style, style_size if style_size is not None else size)
        if preserve_color:
            style_images = [coral(s, images[:1]) for s in style_images]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            content_features = model.encode(images.to(device))
            style_features = (f.to(device) for f in style.features) if encoded else (
                model.encode(s.to(device)) for s in style_images)
            target = sum(w * adain(content_features, f) for w, f in zip(weights, style_features))
            out = model.decode(alpha * target + (1 - alpha) * content_features)
    finally:
        model.train(was_training)
    height, width = images.shape[-2:]
    return out[..., :height, :width].float().clamp(0, 1).cpu()
