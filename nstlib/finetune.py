"""Fine-tune a fast network towards Gatys results, and measure what that gains.

Johnson et al.'s network ``f`` minimises the perceptual loss *on average* over a data set, in one
forward pass; Gatys et al.'s optimisation (:func:`nstlib.stylize`) minimises it for *one* photo
and reaches a lower loss, in minutes. This module pulls ``f`` towards Gatys images
``g_i = stylize(x_i, style)`` computed once for a few photos ``x_i`` (:func:`gatys_targets`)::

    loss_i(f) = L(f(x_i))  +  target_weight * D(f(x_i), g_i)

    L  the usual Johnson loss (:class:`~nstlib.PerceptualLoss`): content target the features
       of x_i itself, style target the style's Gram matrices
    D  kind="pixel":       mean over channels and pixels of (f(x) - g)^2
       kind="perceptual":  sum_{l in content layers} w_l * MSE(F_l(f(x)), F_l(g))

:func:`finetune_from_gatys` takes one Adam step per photo, going through the photos in order,
on a copy of the network. :func:`evaluate_against_gatys` then measures, on held-out photos,
the content and style losses of the fast output before and after fine-tuning and of the Gatys
image (the per-photo optimum the network imitates): one row per photo and image, ready for a
table (:func:`mean_by_output` averages them).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from . import config
from .config import get_device
from .fast import stylize_image
from .gatys import FILE_SIZE, stylize
from .images import load_image
from .losses import content_loss
from .perceptual import PerceptualLoss, check_weight
from .training import DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS, DEFAULT_STYLE_WEIGHT
from .transform_net import TransformerNet
from .validate import positive_int

__all__ = [
    "FINETUNE_HISTORY_KEYS",
    "TARGET_KINDS",
    "evaluate_against_gatys",
    "finetune_from_gatys",
    "gatys_targets",
    "johnson_loss",
    "mean_by_output",
]

TARGET_KINDS = ("pixel", "perceptual")
"""The distances ``D`` to the Gatys image (see the module docstring)."""

FINETUNE_HISTORY_KEYS = ("step", "photo", "total", "perceptual", "content", "style", "tv", "target")
"""The history of :func:`finetune_from_gatys`: ``perceptual`` is ``L`` (weighted), ``content``,
``style``, ``tv`` its unweighted parts, ``target`` the unweighted distance ``D`` and ``total =
perceptual + target_weight * target``; ``photo`` is the index of the step's photo."""


def johnson_loss(weights: str | None = "imagenet", **options) -> PerceptualLoss:
    """:class:`~nstlib.PerceptualLoss` with :func:`~nstlib.train_transform_net`'s defaults (content
    ``relu4_2``, the seed's five style layers, weights 1e5 and 1e10); ``options`` override them."""
    settings = {"content_weight": DEFAULT_CONTENT_WEIGHT, "style_weight": DEFAULT_STYLE_WEIGHT, **options}
    return PerceptualLoss(settings.pop("content_layers", DEFAULT_CONTENT_LAYERS),
                          settings.pop("style_layers", DEFAULT_STYLE_LAYERS), weights=weights, **settings)


def _images(photos, size: int | None, argument: str) -> list[torch.Tensor]:
    """``photos`` (one image or a list; a ``[B, 3, H, W]`` batch counts as B) as ``[1, 3, H, W]`` tensors.

    ``size``: longer side; None keeps a tensor's size and loads a file at :data:`nstlib.gatys.FILE_SIZE`,
    as :func:`nstlib.stylize` does.
    """
    if isinstance(photos, torch.Tensor):
        items = [photos] if photos.dim() == 3 else list(photos.split(1))
    elif isinstance(photos, (str, os.PathLike)):
        items = [photos]
    else:
        items = list(photos)
    if not items:
        raise ValueError(f"{argument} is empty: give at least one image")
    return [load_image(item, size if size is not None or isinstance(item, torch.Tensor) else FILE_SIZE)
            for item in items]


def gatys_targets(photos, style, *, size: int | None = None, progress: bool = False,
                  **stylize_options) -> list[torch.Tensor]:
    """Gatys et al.'s result for each photo: ``[stylize(x, style, **stylize_options).image for x in photos]``.

    The photos are loaded first (longer side ``size``; None keeps tensors as they are), so each
    result ``[1, 3, H, W]`` (CPU, [0, 1]) has exactly its photo's size.
    """
    return [stylize(photo, style, progress=progress, **stylize_options).image
            for photo in _images(photos, size, "photos")]


def _style_grams(loss: PerceptualLoss, style, photos: Sequence[torch.Tensor], style_size, device) -> list[dict]:
    """The style's Gram targets for each photo: style loaded at ``style_size`` (None: the photo's longer
    side, as :func:`nstlib.stylize` does), computed once per size."""
    by_size: dict[int, dict] = {}
    grams = []
    for photo in photos:
        side = style_size or max(photo.shape[-2:])
        if side not in by_size:
            loss.set_style(load_image(style, side).to(device))
            by_size[side] = loss.style_grams
        grams.append(by_size[side])
    return grams


def _check_pairs(photos: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
    if len(photos) != len(targets):
        raise ValueError(f"{len(photos)} photos but {len(targets)} targets: give one Gatys image per photo")
    for i, (photo, target) in enumerate(zip(photos, targets)):
        if photo.shape != target.shape:
            raise ValueError(f"targets[{i}] is {tuple(target.shape)} but photos[{i}] is {tuple(photo.shape)}: "
                             "compute the targets from these photos (gatys_targets keeps their sizes)")


def finetune_from_gatys(net: TransformerNet, photos, targets, style, *, steps: int, target_weight: float,
                        kind: str = "pixel", loss: PerceptualLoss | None = None, lr: float = 1e-4,
                        size: int | None = None, style_size: int | None = None, device=None,
                        progress: bool = True) -> tuple[TransformerNet, dict[str, list[float]]]:
    """Fine-tune a copy of ``net`` so its outputs approach the Gatys images ``targets``; ``net`` is unchanged.

    Step ``k`` (Adam, ``lr``) uses photo ``(k - 1) mod len(photos)`` and minimises
    ``L(f(x)) + target_weight * D(f(x), g)`` (module docstring): ``loss`` is ``L`` (default
    :func:`johnson_loss`, what :func:`~nstlib.train_transform_net` trained with), ``kind`` picks
    ``D``. ``targets``: one image per photo, of the same size (:func:`gatys_targets`). The pixel
    ``D`` is about 1e-2 where the weighted ``L`` of an ImageNet-weighted loss is 1e5 or so: set
    ``target_weight`` so that the two weighted terms (both in the history) are of a size.
    ``steps`` is capped in quick mode. Returns ``(tuned net in eval mode, history)``
    (:data:`FINETUNE_HISTORY_KEYS`). A non-finite loss raises ``FloatingPointError``.
    """
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {TARGET_KINDS}")
    if not isinstance(net, TransformerNet):
        raise TypeError(f"net must be a TransformerNet, got {type(net).__name__}")
    steps = config.cap_steps(positive_int(steps, "steps"))
    target_weight = check_weight(target_weight, "target_weight")
    if check_weight(lr, "lr") == 0:
        raise ValueError("lr=0 must be greater than 0")
    photos, targets = _images(photos, size, "photos"), _images(targets, None, "targets")
    _check_pairs(photos, targets)
    device = torch.device(device) if device is not None else get_device()
    loss = (loss if loss is not None else johnson_loss()).to(device)
    grams = _style_grams(loss, style, photos, style_size, device)
    photos, targets = [p.to(device) for p in photos], [t.to(device) for t in targets]
    with torch.no_grad():  # fixed per photo: its own content features and the Gatys image's
        own = [_content_features(loss, x) for x in photos]
        theirs = [_content_features(loss, g) for g in targets] if kind == "perceptual" else [None] * len(targets)
    tuned = copy.deepcopy(net).to(device).train()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    history: dict[str, list[float]] = {key: [] for key in FINETUNE_HISTORY_KEYS}
    for step in config.progress_bar(range(1, steps + 1), desc="fine-tune", unit="step", disable=not progress):
        i = (step - 1) % len(photos)
        loss.style_grams = grams[i]
        optimizer.zero_grad(set_to_none=True)
        y = tuned(photos[i])
        losses = loss(y, content_targets=own[i])
        target = _distance(loss, y, targets[i], theirs[i], kind)
        total = losses["total"] + target_weight * target
        parts = {"total": total, "perceptual": losses["total"], "target": target,
                 **{key: losses[key] for key in ("content", "style", "tv")}}
        values = {key: float(value.detach()) for key, value in parts.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"fine-tuning diverged at step {step} ({values}): try a lower lr (now {lr:g}) "
                                     f"or target_weight (now {target_weight:g})")
        total.backward()
        optimizer.step()
        for key, value in (("step", step), ("photo", i), *values.items()):
            history[key].append(value)
    return tuned.eval(), history


def _content_features(loss: PerceptualLoss, image: torch.Tensor) -> dict[str, torch.Tensor]:
    features = loss.extractor(image)
    return {name: features[name].detach() for name in loss.content_layers}


def _distance(loss: PerceptualLoss, y: torch.Tensor, target: torch.Tensor, target_features, kind: str) -> torch.Tensor:
    """``D(y, g)``: pixel MSE, or the content-layer feature MSE ``sum_l w_l MSE(F_l(y), F_l(g))``."""
    if kind == "pixel":
        return F.mse_loss(y, target)
    features = loss.extractor(y)
    return sum(w * content_loss(features[name], target_features[name])
               for name, w in loss.layer_weights["content"].items())


def evaluate_against_gatys(nets, photos, style, gatys_images, loss: PerceptualLoss, *, size: int | None = None,
                           style_size: int | None = None) -> list[dict]:
    """Losses of the fast outputs and of the Gatys image for each (held-out) photo.

    ``nets``: one network or a mapping ``{name: net}``, e.g. ``{"before": net, "after": tuned}``.
    For photo ``i`` the targets are set with ``loss.set_content(photo)`` and ``loss.set_style(style
    at style_size, default the photo's longer side)``, and each image (each net's
    :func:`nstlib.stylize_image` output, clamped to [0, 1], then ``gatys_images[i]``) gives a row
    ``{"photo": i, "output": name or "gatys", "content", "style", "tv" (unweighted), "total"
    (weighted), "pixel_distance": mean (image - gatys_images[i])^2}``. Runs on ``loss``'s device
    (each network is moved there, as :func:`nstlib.stylize_image` does).
    """
    nets = dict(nets) if isinstance(nets, Mapping) else {"fast": nets}
    if "gatys" in nets:
        raise ValueError("nets has a network named 'gatys', the name of the Gatys rows: rename it")
    photos, gatys_images = _images(photos, size, "photos"), _images(gatys_images, None, "gatys_images")
    _check_pairs(photos, gatys_images)
    device = next(loss.extractor.parameters()).device
    rows = []
    with torch.no_grad():
        for i, (photo, gatys) in enumerate(zip(photos, gatys_images)):
            photo, gatys = photo.to(device), gatys.to(device)
            loss.set_content(photo)
            loss.set_style(load_image(style, style_size or max(photo.shape[-2:])).to(device))
            images = {name: stylize_image(net, photo, device=device).to(device) for name, net in nets.items()}
            for name, image in {**images, "gatys": gatys}.items():
                losses = loss(image)
                rows.append({"photo": i, "output": name, **{k: float(v) for k, v in losses.items()},
                             "pixel_distance": float(F.mse_loss(image, gatys))})
    return rows


def mean_by_output(rows: Sequence[Mapping]) -> list[dict]:
    """The rows of :func:`evaluate_against_gatys` averaged over photos: one row per output, in order."""
    names = list(dict.fromkeys(row["output"] for row in rows))
    table = []
    for name in names:
        mine = [row for row in rows if row["output"] == name]
        keys = [key for key in mine[0] if key not in ("photo", "output")]
        table.append({"output": name, "photos": len(mine), **{k: sum(r[k] for r in mine) / len(mine) for k in keys}})
    return table
