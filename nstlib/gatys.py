"""Gatys, Ecker & Bethge (2016): style transfer by optimising the pixels of an image.

Start from the content image (or noise) and minimise the perceptual loss
(:mod:`nstlib.perceptual`) with respect to the pixels::

    x* = argmin_x  content_weight * L_content(x, content)
                 + style_weight   * L_style(x, style)
                 + tv_weight      * TV(x)

By default the optimisers see this total divided by its value at the first step (the same
minimiser; see ``rescale_loss`` in :func:`stylize`). ``stylize`` adds what a course needs around
that loop: layer names in either scheme, L-BFGS or Adam, blended styles, colour preservation,
coarse-to-fine scales, a progress bar, a callback for live previews, a per-step loss history and a
record of every setting used. It is a short loop over named steps: check and plan the arguments
(:func:`_stage_plan`, :func:`_check_options`), load the images (:func:`_load_content`), build the
loss (:func:`_perceptual_loss`), then for each stage set the targets (:func:`_set_targets`), pick
the start image (:func:`_start_image`) and optimise (:func:`_optimise`); finally
:func:`_settings` records what was used.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from . import config
from .color import combine_luminance, luminance, match_luminance
from .config import get_device
from .images import load_image
from .layers import GATYS_CONTENT_LAYERS, GATYS_STYLE_LAYERS
from .perceptual import LOSS_KEYS, PerceptualLoss, blend_weights, check_weight
from .precision import autocast, choose as choose_precision
from .validate import non_negative_number, positive_int

Callback = Callable[[int, torch.Tensor, dict], None]

FILE_SIZE = 512
"""Output long side for a content image given as a file, URL or sample name when neither ``size``
nor ``scales`` is given. An image already in memory (tensor, PIL image, array) keeps its size."""

DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
"""Learning rate of each optimiser when ``lr`` is None."""


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


def stylize(
    content,
    style,
    *,
    steps: int | Sequence[int] = 300,
    content_weight: float = 1.0, style_weight: float = 1e6, tv_weight: float = 0.0,
    content_layers: Sequence[str] = GATYS_CONTENT_LAYERS,
    style_layers: Sequence[str] = GATYS_STYLE_LAYERS,
    layer_weights: dict | None = None,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init="content",
    size: int | None = None,
    style_size: int | None = None,
    scales: Sequence[int] | None = None,
    style_blend_weights: Sequence[float] | None = None,
    preserve_color: bool = False,
    seed: int = 0,
    device=None,
    weights: str | None = "imagenet", pooling: str = "max",
    callback: Callback | None = None, callback_every: int = 10, progress: bool = True,
    fast: bool = True,
    rescale_loss: bool = True,
    precision: str = "float32",
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
    * ``size``: long side of the output; ``None``: 512 px (:data:`FILE_SIZE`) for a content file,
      URL or sample name, a tensor, PIL image or array keeps its size. ``scales=[256, 512, 1024]``
      optimises coarse to fine, each stage starting from the previous result upsampled; the last
      scale is the output size (a ``size`` given too must equal it). ``style_size``: long side of
      the style images (default: the current stage's size).
    * ``preserve_color``: luminance-only transfer (Gatys et al. 2017): the luminance is stylised
      and the content's chrominance (YIQ) put back.
    * ``callback(step, image, losses)`` runs every ``callback_every`` steps (and at the last one)
      with the current image in [0, 1] and the losses as floats.
    * ``fast``: VGG19 in the channels-last memory format (what cuDNN's and oneDNN's fastest
      convolutions expect) and one device synchronisation per step for the four losses. One step
      (a loss evaluation and its gradient) agrees with ``fast=False`` within float tolerance; long
      runs diverge as under any reordering of float sums (the optimisers amplify the rounding
      differences: after 100 L-BFGS steps, by tenths of the [0, 1] range at some pixels).
      Always: VGG19 is truncated after the deepest layer used, target Grams are computed once.
    * ``rescale_loss``: minimise ``total / total_0`` (``total_0``: the total at the first
      evaluation of each stage), the same minimiser. Default True because random VGG weights give
      losses near 1e-10, on which torch's L-BFGS (no curvature update while ``y.s <= 1e-10``) and
      Adam (``eps = 1e-8``) stall. So multiplying all loss weights by one constant changes
      nothing, and ``style_weight`` alone does not matter for texture synthesis. ``False``
      minimises the raw weighted total (as the PyTorch tutorial). The history holds raw losses.
    * ``precision``: ``"bfloat16"`` runs VGG19 under bfloat16 autocast where native, else float32 with a
      warning (``"auto"``: quietly; :mod:`nstlib.precision`); pixels, Grams and losses stay float32.

    Same seed and same inputs on the CPU give the same output. In quick mode sizes and steps are
    capped and random weights are used (with a banner).
    """
    started = time.perf_counter()
    plan = _stage_plan(size, scales, steps)
    optimizer, lr, callback_every, style_size = _check_options(optimizer, lr, init, callback_every, style_size)
    _check_weights(content_weight, style_weight, tv_weight)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    mix = blend_weights(style_blend_weights, len(styles))
    device = _choose_device(device)
    dtype = choose_precision(precision, device)  # None: float32

    content_full, plan = _load_content(content, plan)
    styles_full = [load_image(s, style_size or plan[-1][0]) for s in styles]
    loss = _perceptual_loss(
        device, fast, content_layers=content_layers, style_layers=style_layers, content_weight=content_weight,
        style_weight=style_weight, tv_weight=tv_weight, layer_weights=layer_weights, weights=weights, pooling=pooling,
    )
    objective = _pixel_loss(loss, preserve_color, fast, autocast(device, dtype))
    generator = torch.Generator().manual_seed(seed)
    image = None
    with _Recorder(started, sum(n for _, n in plan), callback, callback_every, progress, preserve_color) as recorder:
        for stage_size, stage_steps in plan:
            content_img = _set_targets(loss, content_full, styles_full, mix, stage_size, style_size, preserve_color,
                                       device, dtype)
            param = _start_image(image, init, content_img, generator, preserve_color).to(device)
            param = param.contiguous().clone().requires_grad_(True)  # L-BFGS needs contiguous memory
            _optimise(param, objective, stage_steps, optimizer, lr, partial(recorder.record, content=content_img),
                      rescale_loss=rescale_loss)
            image = param.detach().clamp(0, 1)
    image = _finish(image, content_img, preserve_color)
    settings = _settings(
        loss, plan, scales, optimizer=optimizer, lr=lr, init=init, style_size=style_size, mix=mix,
        preserve_color=preserve_color, seed=seed, device=device, pooling=pooling, fast=fast,
        rescale_loss=rescale_loss, image=image, started=started, dtype=dtype,
    )
    return StylizeResult(image=image.cpu(), history=recorder.history, settings=settings)


# ---- the named steps of stylize ------------------------------------------


def _stage_plan(size, scales, steps) -> list[tuple[int | None, int]]:
    """[(long side, steps)] per stage, after checks and quick-mode caps.

    The long side of the only stage is ``None`` when neither ``size`` nor ``scales`` is given:
    :func:`_load_content` fills it in from the content image.
    """
    if scales is None:
        sizes = [None if size is None else positive_int(size, "size")]
    else:
        sizes = [positive_int(s, "scales") for s in scales]
        if not sizes:
            raise ValueError("scales is empty: give long-side sizes such as [256, 512]")
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"scales={list(scales)} must increase (coarse to fine; the last is the output size)")
        if size is not None and positive_int(size, "size") != sizes[-1]:
            raise ValueError(f"size={size} differs from the last of scales={list(scales)}: give one or make them agree")
    if isinstance(steps, Sequence):
        counts = [positive_int(s, "steps") for s in steps]
        if len(counts) != len(sizes):
            raise ValueError(f"steps has {len(counts)} values for {len(sizes)} scales")
    else:
        counts = [positive_int(steps, "steps")] * len(sizes)
    return [(None if s is None else config.cap_size(s), config.cap_steps(n)) for s, n in zip(sizes, counts)]


def _check_options(optimizer, lr, init, callback_every, style_size) -> tuple[str, float, int, int | None]:
    """The checked optimiser name, learning rate, callback interval and style size (quick-mode capped)."""
    optimizer = str(optimizer).lower()
    if optimizer not in DEFAULT_LR:
        raise ValueError(f"optimizer={optimizer!r} must be 'lbfgs' or 'adam'")
    lr = non_negative_number(DEFAULT_LR[optimizer] if lr is None else lr, "lr")
    if lr == 0:
        raise ValueError("lr must be greater than 0")
    if isinstance(init, str) and init not in ("content", "noise"):
        raise ValueError(f"init={init!r} must be 'content', 'noise' or an image tensor")
    callback_every = positive_int(callback_every, "callback_every")
    if style_size is not None:
        style_size = config.cap_size(positive_int(style_size, "style_size"))
    return optimizer, lr, callback_every, style_size


def _check_weights(content_weight, style_weight, tv_weight) -> None:
    """ValueErrors for a bad loss weight (as :class:`~nstlib.PerceptualLoss` words them) and for
    ``content_weight = style_weight = tv_weight = 0``: a loss that is 0 everywhere leaves the start
    image unchanged. One of content and style at 0 is fine (:func:`reconstruct_content`,
    :func:`synthesize_texture`), and so is total variation alone (a smoothing)."""
    weights = {name: check_weight(value, name) for name, value in
               (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight))}
    if not any(weights.values()):
        raise ValueError(
            f"content_weight={weights['content_weight']} and style_weight={weights['style_weight']} (and "
            f"tv_weight={weights['tv_weight']}): the loss is 0 for every image, so nothing would change and the "
            "result would be the start image. Give content_weight > 0 (keep the content's layout) and/or "
            "style_weight > 0 (paint the style)")


def _choose_device(device) -> torch.device:
    """``device`` as a :class:`torch.device` (default: the best available); cuDNN autotuning on CUDA."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def _load_content(content, plan: list[tuple[int | None, int]]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The content image at the output size, and ``plan`` with the output size filled in.

    An unset output size (``None``) becomes :data:`FILE_SIZE` for a file, URL or sample name
    (``str`` or path) and the image's own long side otherwise (quick mode caps both).
    """
    output_size, last_steps = plan[-1]
    if output_size is None and isinstance(content, (str, os.PathLike)):
        output_size = config.cap_size(FILE_SIZE)
    image = load_image(content, output_size)
    return image, [*plan[:-1], (max(image.shape[-2:]), last_steps)]


def _perceptual_loss(device: torch.device, fast: bool, **options) -> PerceptualLoss:
    """:class:`~nstlib.PerceptualLoss` on ``device``; its VGG19 in channels-last memory format when ``fast``."""
    loss = PerceptualLoss(**options).to(device)
    loss.extractor.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
    return loss


def _pixel_loss(loss: PerceptualLoss, preserve_color: bool, fast: bool, precision=None) -> Callable[[torch.Tensor], dict]:
    """The losses as a function of the optimised tensor (one luminance channel with ``preserve_color``),
    evaluated inside the context ``precision`` (an autocast, or None for float32)."""
    memory_format = torch.channels_last if fast else torch.contiguous_format
    context = precision if precision is not None else contextlib.nullcontext()

    def losses_of(param: torch.Tensor) -> dict[str, torch.Tensor]:
        # the optimised tensor stays contiguous (L-BFGS flattens it); VGG gets its own layout
        rgb = param.expand(-1, 3, -1, -1) if preserve_color else param
        with context:
            return loss(rgb.contiguous(memory_format=memory_format))

    return losses_of


def _set_targets(loss, content_full, styles_full, mix, size, style_size, preserve_color, device,
                 dtype=None) -> torch.Tensor:
    """Set the content and (blended) style targets at long side ``size``; returns the content image.

    With ``preserve_color`` the targets are luminances, repeated to 3 channels: the content's Y,
    and each style's Y matched to the mean and standard deviation of the content's. The targets are
    computed in the precision of the optimisation (``dtype``: autocast, None for float32) and kept
    in float32, so the content loss of the content image itself is exactly 0 in either.
    """
    content_img = load_image(content_full, size).to(device)
    style_imgs = [load_image(s, style_size or size).to(device) for s in styles_full]
    with autocast(device, dtype):
        if preserve_color:
            content_y = luminance(content_img)
            style_imgs = [match_luminance(luminance(s), content_y).clamp(0, 1).expand(-1, 3, -1, -1) for s in style_imgs]
            loss.set_content(content_y.expand(-1, 3, -1, -1))
        else:
            loss.set_content(content_img)
        loss.set_style(style_imgs, mix)
    loss.content_targets = {name: target.float() for name, target in loss.content_targets.items()}
    return content_img


def _start_image(previous, init, content: torch.Tensor, generator: torch.Generator, preserve_color: bool) -> torch.Tensor:
    """Where a stage starts: the previous stage's result upsampled (bicubic), or ``init`` at the first."""
    if previous is not None:
        return F.interpolate(previous, size=content.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    channels = 1 if preserve_color else 3
    if isinstance(init, torch.Tensor):
        start = load_image(init.detach().cpu(), max(content.shape[-2:])).to(content.device)
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


class _Recorder:
    """Per-evaluation bookkeeping: the loss history, the progress bar, the callback, a finite check.

    A context manager: the progress bar is closed on the way out, also after an error.
    """

    def __init__(self, started: float, total_steps: int, callback, callback_every: int, progress: bool, preserve_color: bool):
        self.history: dict[str, list[float]] = {key: [] for key in (*LOSS_KEYS, "seconds")}
        self.started, self.total_steps = started, total_steps
        self.callback, self.callback_every, self.preserve_color = callback, callback_every, preserve_color
        self.bar = config.progress_bar(total=total_steps, desc="stylize", disable=not progress, leave=False)

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def record(self, losses: dict[str, torch.Tensor], param: torch.Tensor, *, content: torch.Tensor) -> None:
        """Append one evaluation's losses (one device synchronisation); call back when it is time."""
        values = dict(zip(LOSS_KEYS, torch.stack([losses[k].detach() for k in LOSS_KEYS]).tolist()))
        if not math.isfinite(values["total"]):
            raise FloatingPointError(
                f"the loss became {values['total']} at step {len(self.history['total']) + 1}: "
                "lower lr or the loss weights"
            )
        for key in LOSS_KEYS:
            self.history[key].append(values[key])
        self.history["seconds"].append(time.perf_counter() - self.started)
        step = len(self.history["total"])
        self.bar.update(1)
        if step % self.callback_every == 0 or step == self.total_steps:
            self.bar.set_postfix(total=f"{values['total']:.4g}", refresh=False)
            if self.callback is not None:
                self.callback(step, _finish(param.detach(), content, self.preserve_color), values)


def _optimise(param, loss_fn, steps: int, optimizer: str, lr: float, record, *, rescale_loss: bool = True) -> None:
    """Run ``steps`` loss evaluations of L-BFGS or Adam on ``param``, calling ``record`` each time.

    The objective is ``total / total_0`` with ``total_0`` the total at the first evaluation of
    this call when ``rescale_loss`` (and ``total_0`` is positive and finite), else ``total``:
    the same minimiser, but free of the absolute thresholds that make the optimisers stall on
    tiny losses (random VGG weights give losses around 1e-10). torch's L-BFGS skips its
    curvature update when ``y.s <= 1e-10`` and starts with a step of ``lr * min(1, 1/|g|_1)``;
    Adam's ``eps = 1e-8`` swamps gradients far below it. After the rescaling, multiplying all
    loss weights by a constant changes nothing.
    """
    scale: list[float] = []

    def evaluate() -> torch.Tensor:
        losses = loss_fn(param)
        if not scale:
            first = float(losses["total"].detach()) if rescale_loss else 1.0
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


def _settings(loss: PerceptualLoss, plan, scales, *, optimizer, lr, init, style_size, mix, preserve_color, seed,
              device, pooling, fast, rescale_loss, image, started, dtype=None) -> dict:
    """Every setting used, JSON-serialisable (for papermill metrics): what :attr:`StylizeResult.settings` holds."""
    return {
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
        "size": plan[-1][0],
        "style_size": style_size,
        "scales": [s for s, _ in plan] if scales is not None else None,
        "style_blend_weights": mix,
        "preserve_color": bool(preserve_color),
        "seed": seed,
        "device": str(device),
        "weights": "random" if loss.extractor.weights is None or config.quick_mode() else loss.extractor.weights,
        "pooling": pooling,
        "fast": bool(fast),
        "rescale_loss": bool(rescale_loss),
        "precision": "float32" if dtype is None else str(dtype).removeprefix("torch."),
        "quick": config.quick_mode(),
        "output_shape": list(image.shape),
        "seconds": time.perf_counter() - started,
    }


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
    """Noise optimised to match ``image``'s features at ``layer`` (content loss only).

    ``size`` (default 256; ``None``: the rule of :func:`stylize`) and ``options`` (any other
    :func:`stylize` keyword, e.g. ``rescale_loss``) are passed on.
    """
    options = {"init": "noise", "style_weight": 0.0, "content_weight": 1.0, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[layer], style_layers=[layer], **options)


def synthesize_texture(image, layers: Sequence[str], *, steps: int = 200, size: int | None = 256, **options) -> StylizeResult:
    """Noise optimised to match ``image``'s Gram matrices at ``layers`` (style loss only).

    ``size`` (default 256; ``None``: the rule of :func:`stylize`) and ``options`` (any other
    :func:`stylize` keyword) are passed on. With ``rescale_loss=True`` (the default) the
    optimiser sees ``style / style_0``, so ``style_weight`` changes nothing here but the
    recorded ``total``; with ``rescale_loss=False`` it scales the gradient.
    """
    options = {"init": "noise", "content_weight": 0.0, "style_weight": 1e6, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[list(layers)[0]], style_layers=layers, **options)
