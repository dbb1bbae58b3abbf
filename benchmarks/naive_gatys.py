"""A deliberately naive Gatys baseline, written the way the PyTorch neural-style tutorial does it.

It is the yardstick of the benchmark, not course code: the full VGG19 feature stack is rebuilt as
an ``nn.Sequential`` with loss modules inserted after the chosen layers (nothing truncated), the
Gram matrix uses ``view`` + ``mm``, each loss module stores its loss as a side effect, and the
image is clamped inside the L-BFGS closure. The objective equals nstlib's with its default layer
weights: the tutorial's ``mse_loss`` of Grams is ``style_loss / C**2``.

``freeze=False`` (the default) is the tutorial as it stood until 2023 and as most copies of it
(the seed's code among them) still run: VGG19's weights keep ``requires_grad=True``, so every
backward pass also computes a gradient for each of its 20 million weights, only to throw it away.
``freeze=True`` is the tutorial's current version (``model.requires_grad_(False)``).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from nstlib.layers import resolve_layers, tutorial_name
from nstlib.vgg import IMAGENET_MEAN, IMAGENET_STD, load_vgg19_state, vgg19_layers


class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, input):
        self.loss = F.mse_loss(input, self.target)
        return input


def gram_matrix(input):
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    G = torch.mm(features, features.t())
    return G.div(a * b * c * d)


class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = gram_matrix(target_feature).detach()
        self.loss = torch.zeros(())

    def forward(self, input):
        self.loss = F.mse_loss(gram_matrix(input), self.target)
        return input


class Normalization(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean.to(img)) / self.std.to(img)


def build_model(content_img, style_img, content_layers, style_layers, weights=None, freeze=False):
    """The full 37-layer stack with loss modules after the named layers (tutorial names)."""
    cnn = vgg19_layers()
    cnn.load_state_dict(load_vgg19_state(weights))
    cnn = cnn.to(content_img.device).eval()
    content_names = [tutorial_name(n) for n in resolve_layers(content_layers)]
    style_names = [tutorial_name(n) for n in resolve_layers(style_layers)]
    model = nn.Sequential(Normalization(IMAGENET_MEAN, IMAGENET_STD))
    content_losses, style_losses = [], []
    i = 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name = f"relu_{i}"
            layer = nn.ReLU(inplace=False)
        else:
            name = f"pool_{i}"
        model.add_module(name, layer)
        if name in content_names:
            loss = ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{i}", loss)
            content_losses.append(loss)
        if name in style_names:
            loss = StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{i}", loss)
            style_losses.append(loss)
    model.requires_grad_(not freeze)
    return model, style_losses, content_losses


def run_style_transfer(content_img, style_img, *, steps, content_layers, style_layers,
                       content_weight=1.0, style_weight=1e6, weights=None, freeze=False):
    """Tutorial-style L-BFGS loop; returns (image, evaluations, losses, time stamps per evaluation).

    As in the tutorial, ``optimizer.step(closure)`` is called until ``steps`` evaluations have
    run; each call does up to 20 (fewer when asked for fewer steps), so the count can overshoot.
    """
    model, style_losses, content_losses = build_model(content_img, style_img, content_layers, style_layers, weights, freeze)
    input_img = content_img.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([input_img], max_iter=min(20, steps))  # the tutorial's 20 per step() call
    evaluations = [0]
    totals, stamps = [], []
    while evaluations[0] < steps:

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = sum(sl.loss for sl in style_losses) * style_weight
            content_score = sum(cl.loss for cl in content_losses) * content_weight
            loss = style_score + content_score
            loss.backward()
            evaluations[0] += 1
            totals.append(loss.item())
            stamps.append(time.perf_counter())
            return style_score + content_score

        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img.detach(), evaluations[0], totals, stamps
