"""The perceptual loss shared by Gatys optimisation and Johnson training.

For an image ``x`` with VGG19 features ``F_l(x)``:

    total = content_weight * sum_{l in content} w_l * content_loss(F_l(x), F_l(content))
          + style_weight   * sum_{l in style}   w_l * style_loss(F_l(x), A_l)
          + tv_weight      * total_variation(x)

where ``A_l = sum_i b_i * gram_matrix(F_l(style_i))`` mixes several style images with blend
weights ``b_i`` that sum to 1.

Default layer weights: ``w_l = 1`` for content layers and ``w_l = 1 / C_l^2`` for style layers
(``C_l`` = channels). :func:`~nstlib.losses.style_loss` *sums* over the ``C x C`` Gram entries, so
without this a 512-channel layer would outweigh a 64-channel one by 64 to 1; with it, each style
layer is the *mean* squared Gram difference, exactly the PyTorch tutorial's and Johnson et al.'s
convention, and their proven weights (content 1, style 1e6) carry over unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .layers import LAYER_CHANNELS, resolve_layer, resolve_layers
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .vgg import VGGFeatures

LOSS_KEYS = ("total", "content", "style", "tv")


def check_weight(value: float, argument: str) -> float:
    """``value`` as a float, or a ValueError naming ``argument`` when negative or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{argument}={value!r} must be a number") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"{argument}={value!r} must be a finite number >= 0")
    return number


def blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Blend weights for ``count`` style images, normalised to sum to 1 (equal when None)."""
    if count < 1:
        raise ValueError("style is empty: give at least one style image")
    if weights is None:
        return [1.0 / count] * count
    weights = [check_weight(w, "style_blend_weights") for w in weights]
    if len(weights) != count:
        raise ValueError(f"style_blend_weights has {len(weights)} values for {count} style images")
    total = sum(weights)
    if total <= 0:
        raise ValueError("style_blend_weights must not all be zero")
    return [w / total for w in weights]


def default_layer_weights(content_layers: Sequence[str], style_layers: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"content": {l: 1}, "style": {l: 1 / C_l^2}}`` (see the module docstring)."""
    return {
        "content": {name: 1.0 for name in content_layers},
        "style": {name: 1.0 / LAYER_CHANNELS[name] ** 2 for name in style_layers},
    }


class PerceptualLoss(nn.Module):
    """Content, style and total-variation losses of an image against fixed targets.

    ``layer_weights`` overrides the defaults per layer, either as ``{"conv4_2": 1.0, ...}`` (the
    weight of that layer wherever it is used) or as ``{"content": {...}, "style": {...}}``.
    Set targets with :meth:`set_content` and :meth:`set_style`, then call the module on an image
    to get a dict of scalar tensors ``total``, ``content``, ``style``, ``tv`` (unweighted parts;
    ``total`` is weighted). ``extractor`` lets several losses share one :class:`VGGFeatures`.
    """

    def __init__(
        self,
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        *,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
        layer_weights: Mapping | None = None,
        weights: str | None = "imagenet",
        pooling: str = "max",
        extractor: VGGFeatures | None = None,
    ):
        super().__init__()
        self.content_layers = resolve_layers(content_layers, "content_layers")
        self.style_layers = resolve_layers(style_layers, "style_layers")
        self.content_weight = check_weight(content_weight, "content_weight")
        self.style_weight = check_weight(style_weight, "style_weight")
        self.tv_weight = check_weight(tv_weight, "tv_weight")
        self.layer_weights = self._layer_weights(layer_weights)
        needed = list(dict.fromkeys(self.content_layers + self.style_layers))
        if extractor is None:
            extractor = VGGFeatures(needed, weights=weights, pooling=pooling)
        elif not set(needed) <= set(extractor.layers):
            raise ValueError(f"extractor computes {extractor.layers} but the loss needs {needed}")
        self.extractor = extractor
        self.content_targets: dict[str, torch.Tensor] = {}
        self.style_grams: dict[str, torch.Tensor] = {}

    def _layer_weights(self, overrides: Mapping | None) -> dict[str, dict[str, float]]:
        table = default_layer_weights(self.content_layers, self.style_layers)
        if not overrides:
            return table
        nested = set(overrides) <= {"content", "style"}
        parts = overrides if nested else {"content": overrides, "style": overrides}
        for part, given in parts.items():
            for name, value in given.items():
                layer = resolve_layer(name)
                if layer in table[part]:
                    table[part][layer] = check_weight(value, f"layer_weights[{name!r}]")
                elif nested or layer not in table["content"] and layer not in table["style"]:
                    raise ValueError(
                        f"layer_weights names {name!r}, which is not a {part if nested else 'content or style'} layer "
                        f"(content: {self.content_layers}, style: {self.style_layers})"
                    )
        return table

    @torch.no_grad()
    def set_content(self, content: torch.Tensor) -> None:
        """Store the content image's features at the content layers."""
        features = self.extractor(content)
        self.content_targets = {name: features[name].detach() for name in self.content_layers}

    @torch.no_grad()
    def set_style(self, styles: torch.Tensor | Sequence[torch.Tensor], blend: Sequence[float] | None = None) -> None:
        """Store the (blended) Gram matrices of one or several style images."""
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        mix = blend_weights(blend, len(styles))
        grams: dict[str, torch.Tensor] = {}
        for weight, style in zip(mix, styles):
            features = self.extractor(style)
            for name in self.style_layers:
                gram = gram_matrix(features[name]).mean(0, keepdim=True) * weight
                grams[name] = grams[name] + gram if name in grams else gram
        self.style_grams = grams

    def forward(self, image: torch.Tensor, content_targets: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Losses of ``image``; ``content_targets`` replaces the stored ones (Johnson training)."""
        targets = self.content_targets if content_targets is None else content_targets
        if not targets or not self.style_grams:
            raise RuntimeError("set the targets first: call set_content(...) and set_style(...)")
        features = self.extractor(image)
        content = sum(w * content_loss(features[n], targets[n]) for n, w in self.layer_weights["content"].items())
        style = sum(w * style_loss(features[n], self.style_grams[n]) for n, w in self.layer_weights["style"].items())
        tv = total_variation(image) if self.tv_weight > 0 else image.new_zeros(())
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return {"total": total, "content": content, "style": style, "tv": tv}
