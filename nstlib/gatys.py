"""Gatys, Ecker & Bethge (2016): style transfer by optimising the pixels of an image.

Start from the content image (or noise) and minimise the perceptual loss
(:mod:`nstlib.perceptual`) with respect to the pixels::

    x* = argmin_x  content_weight * L_content(x, content)
                 + style_weight   * L_style(x, style)
                 + tv_weight      * TV(x)

``stylize`` adds what a course needs around that loop: layer names in either scheme, L-BFGS or
Adam, blended styles, colour preservation, coarse-to-fine scales, a progress bar, a callback for
live previews, a per-step loss history and a record of every setting used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import config
from .color import combine_luminance, luminance, match_luminance
from .layers import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS
from .perceptual import LOSS_KEYS, PerceptualLoss, blend_weights, check_weight
from .config import get_device

Callback = Callable[[int, torch.Tensor, dict], None]


@dataclass
class StylizeResult:
    """What :func:`stylize` returns.

    ``image``: ``[1, 3, H, W]`` in [0, 1] on the CPU. ``history``: per-step lists ``total``,
    ``content``, ``style``, ``tv`` (the losses at each evaluation) and ``seconds`` (time since the
    start). ``settings``: every setting used (JSON-serialisable, for papermill metrics).
    """

    image: torch.Tensor
    history: dict[str, list[float]]
    settings: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall time of the optimisation."""
        return self.history["seconds"][-1] if self.history["seconds"] else 0.0

    def final_losses(self) -> dict[str, float]:
        """The last recorded value of each loss."""
        return {key: self.history[key][-1] for key in LOSS_KEYS if self.history[key]}

    def save(self, path) -> Path:
        """Save the image (format from the extension)."""
        from .images import save_image

        return save_image(self.image, path)


def _positive_int(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument}={value!r} must be a positive whole number")
    return value


def _stage_plan(size, scales, steps) -> list[tuple[int, int]]:
    """[(long side, steps)] per stage, after checks and quick-mode caps."""
    if scales is None:
        sizes = [_positive_int(size, "size")]
    else:
        sizes = [_positive_int(s, "scales") for s in scales]
        if not sizes:
            raise ValueError("scales is empty: give long-side sizes such as [256, 512]")
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"scales={list(scales)} must increase (coarse to fine; the last is the output size)")
        if size is not None and _positive_int(size, "size") != sizes[-1]:
            raise ValueError(f"size={size} differs from the last of scales={list(scales)}: give one or make them agree")
    if isinstance(steps, Sequence):
        counts = [_positive_int(s, "steps") for s in steps]
        if len(counts) != len(sizes):
            raise ValueError(f"steps has {len(counts)} values for {len(sizes)} scales")
    else:
        counts = [_positive_int(steps, "steps")] * len(sizes)
    return [(config.cap_size(s), config.cap_steps(n)) for s, n in zip(sizes, counts)]


def _resize(image: torch.Tensor, long_side: int) -> torch.Tensor:
    from .images import load_image

    return load_image(image, long_side)


def stylize(
    content,
    style,
    *,
    steps: int | Sequence[int] = 300,
    content_weight: float = 1.0,
    style_weight: float = 1e6,
    tv_weight: float = 0.0,
    content_layers: Sequence[str] = GATYS_CONTENT_LAYERS,
    style_layers: Sequence[str] = GATYS_STYLE_LAYERS,
    layer_weights: dict | None = None,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init="content",
    size: int | None = 512,
    style_size: int | None = None,
    scales: Sequence[int] | None = None,
    style_blend_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    seed: int = 0,
    device=None,
    weights: str | None = "imagenet",
    pooling: str = "max",
    callback: Callback | None = None,
    callback_every: int = 10,
    progress: bool = True,
    fast: bool = True,
) -> StylizeResult:
    """Stylise ``content`` with ``style`` by optimising pixels (Gatys et al. 2016).

    Images (``content``, ``style``) are anything :func:`~nstlib.load_image` takes: a path, URL,
    sample name, PIL image or ``[1, 3, H, W]`` tensor. ``style`` may be a list, mixed by
    ``style_blend_weights`` (a weighted mix of Gram targets, normalised to sum 1).

    * ``steps``: loss evaluations. For L-BFGS one step is one function evaluation, as in the
      PyTorch tutorial; its tolerances are disabled so it never stops early (random weights give
      tiny gradients). With ``scales``, ``steps`` is per stage (an int or one value per scale).
    * ``content_layers`` / ``style_layers``: names in either scheme (``conv4_2`` or ``conv_10``);
      ``layer_weights`` overrides the per-layer weights (see :class:`~nstlib.PerceptualLoss`).
    * ``optimizer``: ``"lbfgs"`` (``lr`` default 1) or ``"adam"`` (``lr`` default 0.02, pixels
      clamped to [0, 1] after every step).
    * ``init``: ``"content"``, ``"noise"`` (uniform, seeded by ``seed``) or an image tensor.
    * ``size``: long side of the output; ``style_size``: long side of the style images (default:
      the current size). ``scales=[256, 512, 1024]`` optimises coarse to fine, each stage starting
      from the previous result upsampled; the last scale is the output size.
    * ``preserve_color``: luminance-only transfer (Gatys et al. 2017): the luminance is stylised
      and the content's chrominance (YIQ) put back.
    * ``callback(step, image, losses)`` runs every ``callback_every`` steps (and at the last one)
      with the current image in [0, 1] and the losses as floats.
    * ``fast``: run VGG19 in the channels-last memory format (what cuDNN's and oneDNN's fastest
      convolutions expect) and read the four losses back with one device synchronisation per
      step. It changes results only within float tolerance; ``fast=False`` is the plain path.
      VGG19 is always truncated after the deepest layer used and target Grams are computed once.

    Same seed and same inputs on the CPU give the same output. In quick mode sizes and steps are
    capped and random weights are used (with a banner).
    """
    started = time.perf_counter()
    plan = _stage_plan(size, scales, steps)
    optimizer = str(optimizer).lower()
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer={optimizer!r} must be 'lbfgs' or 'adam'")
    lr = check_weight(lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.02), "lr")
    if lr == 0:
        raise ValueError("lr must be greater than 0")
    if isinstance(init, str) and init not in ("content", "noise"):
        raise ValueError(f"init={init!r} must be 'content', 'noise' or an image tensor")
    callback_every = _positive_int(callback_every, "callback_every")
    if style_size is not None:
        style_size = config.cap_size(_positive_int(style_size, "style_size"))
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    mix = blend_weights(style_blend_weights, len(styles))
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    from .images import load_image

    output_size = plan[-1][0]
    content_full = load_image(content, output_size)
    styles_full = [load_image(s, style_size or output_size) for s in styles]
    loss = PerceptualLoss(
        content_layers,
        style_layers,
        content_weight=content_weight,
        style_weight=style_weight,
        tv_weight=tv_weight,
        layer_weights=layer_weights,
        weights=weights,
        pooling=pooling,
    ).to(device)
    memory_format = torch.channels_last if fast else torch.contiguous_format
    loss.extractor.to(memory_format=memory_format)

    history: dict[str, list[float]] = {key: [] for key in (*LOSS_KEYS, "seconds")}
    total_steps = sum(n for _, n in plan)
    bar = tqdm(total=total_steps, desc="stylize", disable=not progress, leave=False)
    generator = torch.Generator().manual_seed(seed)
    image = None
    for stage, (stage_size, stage_steps) in enumerate(plan):
        content_img = _resize(content_full, stage_size).to(device)
        style_imgs = [_resize(s, style_size or stage_size).to(device) for s in styles_full]
        if preserve_color:
            content_y = luminance(content_img)
            style_imgs = [match_luminance(luminance(s), content_y).clamp(0, 1).expand(-1, 3, -1, -1) for s in style_imgs]
            loss.set_content(content_y.expand(-1, 3, -1, -1))
        else:
            loss.set_content(content_img)
        loss.set_style(style_imgs, mix)

        if stage == 0:
            start = _initial_image(init, content_img, generator, preserve_color)
        else:
            start = F.interpolate(image, size=content_img.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        param = start.to(device).contiguous().clone().requires_grad_(True)  # L-BFGS needs contiguous memory

        def to_rgb(p: torch.Tensor) -> torch.Tensor:
            # the optimised tensor stays contiguous (L-BFGS flattens it); VGG gets its own layout
            return (p.expand(-1, 3, -1, -1) if preserve_color else p).contiguous(memory_format=memory_format)

        def record(losses: dict[str, torch.Tensor], p: torch.Tensor) -> None:
            values = dict(zip(LOSS_KEYS, torch.stack([losses[k].detach() for k in LOSS_KEYS]).tolist()))
            if not math.isfinite(values["total"]):
                raise FloatingPointError(
                    f"the loss became {values['total']} at step {len(history['total']) + 1}: "
                    "lower lr or the loss weights"
                )
            for key in LOSS_KEYS:
                history[key].append(values[key])
            history["seconds"].append(time.perf_counter() - started)
            step = len(history["total"])
            bar.update(1)
            if step % callback_every == 0 or step == total_steps:
                bar.set_postfix(total=f"{values['total']:.4g}", refresh=False)
                if callback is not None:
                    callback(step, _finish(p.detach(), content_img, preserve_color), values)

        _optimise(param, lambda p: loss(to_rgb(p)), stage_steps, optimizer, lr, record)
        image = param.detach().clamp(0, 1)
        if preserve_color:
            image = _finish(image, content_img, True) if stage == len(plan) - 1 else image
    bar.close()

    settings = {
        "steps": [n for _, n in plan] if scales is not None else plan[0][1],
        "content_weight": loss.content_weight,
        "style_weight": loss.style_weight,
        "tv_weight": loss.tv_weight,
        "content_layers": loss.content_layers,
        "style_layers": loss.style_layers,
        "layer_weights": loss.layer_weights,
        "optimizer": optimizer,
        "lr": lr,
        "init": init if isinstance(init, str) else "tensor",
        "size": output_size,
        "style_size": style_size,
        "scales": [s for s, _ in plan] if scales is not None else None,
        "style_blend_weights": mix,
        "preserve_color": bool(preserve_color),
        "seed": seed,
        "device": str(device),
        "weights": "random" if loss.extractor.weights is None or config.quick_mode() else loss.extractor.weights,
        "pooling": pooling,
        "fast": bool(fast),
        "quick": config.quick_mode(),
        "output_shape": list(image.shape),
        "seconds": time.perf_counter() - started,
    }
    return StylizeResult(image=image.cpu(), history=history, settings=settings)


def _initial_image(init, content: torch.Tensor, generator: torch.Generator, preserve_color: bool) -> torch.Tensor:
    channels = 1 if preserve_color else 3
    if isinstance(init, torch.Tensor):
        start = _resize(init.detach().cpu(), max(content.shape[-2:])).to(content.device)
        if start.shape[-2:] != content.shape[-2:]:
            start = F.interpolate(start, size=content.shape[-2:], mode="bilinear", align_corners=False)
        return luminance(start) if preserve_color else start
    if init == "noise":
        return torch.rand((1, channels, *content.shape[-2:]), generator=generator).to(content.device)
    return luminance(content) if preserve_color else content.clone()


def _finish(param: torch.Tensor, content: torch.Tensor, preserve_color: bool) -> torch.Tensor:
    """The displayable RGB image for the optimised tensor (clamped to [0, 1])."""
    if preserve_color:
        return combine_luminance(param.clamp(0, 1), content).clamp(0, 1)
    return param.clamp(0, 1)


def _optimise(param, loss_fn, steps: int, optimizer: str, lr: float, record) -> None:
    """Run ``steps`` loss evaluations of L-BFGS or Adam on ``param``, calling ``record`` each time.

    Both optimisers minimise the total loss divided by its value at the first step: the same
    minimiser, but free of the absolute thresholds that make them stall on tiny losses (random
    VGG weights give losses around 1e-10). torch's L-BFGS skips its curvature update when
    ``y.s <= 1e-10`` and starts with a step of ``lr * min(1, 1/|g|_1)``; Adam's ``eps = 1e-8``
    swamps gradients far below it. After the rescaling, multiplying all loss weights by a
    constant changes nothing.
    """
    scale: list[float] = []

    def evaluate() -> torch.Tensor:
        losses = loss_fn(param)
        if not scale:
            first = float(losses["total"].detach())
            scale.append(1.0 / first if first > 0 and math.isfinite(first) else 1.0)
        objective = losses["total"] * scale[0]
        objective.backward()
        record(losses, param)
        return objective.detach()

    if optimizer == "lbfgs":
        # max_iter = steps gives exactly `steps` closure calls: one before the first iteration and
        # one per iteration except the last, whose update is applied without a further evaluation.
        opt = torch.optim.LBFGS(
            [param], lr=lr, max_iter=steps, max_eval=steps, tolerance_grad=-1.0, tolerance_change=-1.0, history_size=100
        )

        def closure():
            opt.zero_grad(set_to_none=True)
            return evaluate()

        opt.step(closure)
    else:
        opt = torch.optim.Adam([param], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            evaluate()
            opt.step()
            with torch.no_grad():
                param.clamp_(0, 1)


# ---- reconstructions --------------------------------------------------
# What does a layer know? Reconstructions from white noise (Gatys et al. 2016, Fig. 1).
#
# * :func:`reconstruct_content` optimises noise until its features at **one** layer match an
#   image's: low layers give back the pixels almost exactly, high layers keep objects and layout
#   but lose exact colours and textures.
# * :func:`synthesize_texture` optimises noise until its **Gram matrices** at a set of layers match
#   an image's: the result has the image's textures and colours but none of its layout.
#
# Both are :func:`~nstlib.stylize` with one of the two losses switched off.


def reconstruct_content(image, layer: str, *, steps: int = 200, size: int | None = 256, **options) -> StylizeResult:
    """Noise optimised to match ``image``'s features at ``layer`` (content loss only)."""
    options = {"init": "noise", "style_weight": 0.0, "content_weight": 1.0, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[layer], style_layers=[layer], **options)


def synthesize_texture(image, layers: Sequence[str], *, steps: int = 200, size: int | None = 256, **options) -> StylizeResult:
    """Noise optimised to match ``image``'s Gram matrices at ``layers`` (style loss only)."""
    options = {"init": "noise", "content_weight": 0.0, "style_weight": 1e6, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[list(layers)[0]], style_layers=layers, **options)
