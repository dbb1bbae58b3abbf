"""The losses of neural style transfer, as pure functions.

Notation: a feature map ``F`` of one image has ``C`` channels and ``H x W`` positions; reshaped
it is a ``C x M`` matrix with ``M = H W``. All functions take batches ``[B, C, H, W]``.

Conventions differ between codebases only by constant factors, and the course uses Johnson et
al.'s (2016), as on the seed slides:

=====================  ===========================================  ==============================
codebase               style loss of one layer                      in terms of :func:`style_loss`
=====================  ===========================================  ==============================
this course / Johnson  ``|| F F^T/(CHW) - A ||_F^2``                 ``style_loss``
PyTorch tutorial       ``mean over the C^2 entries`` of the same     ``style_loss / C**2``
                       (its Gram divides by ``B C H W``; B = 1)
Gatys et al. (2016)    ``1/(4 N^2 M^2) sum (G - A)^2`` with the      ``style_loss / 4``
                       raw Gram ``G = F F^T``, ``N = C``, ``M = HW``
=====================  ===========================================  ==============================

(For Gatys: ``G_raw = CHW * G``, so ``(CHW)^2 / (4 C^2 (HW)^2) = 1/4``.) The tests check both
factors against independent implementations of the other conventions. Because of such factors,
the loss *weights* of one codebase do not carry over to another.
"""

from __future__ import annotations

import contextlib

import torch


def _check_features(features: torch.Tensor, argument: str = "features") -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"{argument} must be a 4-D tensor [batch, channels, height, width], got {shape}")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of each feature map in the batch, normalised by ``C H W``.

    ``G[b, i, j] = sum_k F[b, i, k] F[b, j, k] / (C H W)`` where ``k`` runs over the ``H W``
    positions. Returns ``[B, C, C]``; symmetric, positive semi-definite, and unchanged by any
    permutation of the positions (it keeps *which features occur together*, not *where*).

    Half-precision features (float16 / bfloat16, e.g. under mixed precision) are multiplied
    in float32 with autocast switched off, and the result is float32: in float16 the sum of
    ``H W`` products overflows (65504 is its largest value) and bfloat16 keeps only 8 bits.
    """
    _check_features(features)
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    with _autocast_off(flat.device.type):
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _autocast_off(device_type: str):
    """A context that disables :func:`torch.autocast` on ``device_type`` (CUDA and CPU; others have none)."""
    if device_type in ("cuda", "cpu"):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between two feature maps: ``||F - P||^2 / (B C H W)``.

    With ``B = 1`` this is Johnson et al.'s feature reconstruction loss ``1/(CHW) ||F - P||_2^2``.
    ``target`` is detached (it is a fixed goal, not something to optimise); a target with batch
    size 1 is compared with every image of the batch.
    """
    _check_features(features)
    if target.dim() != 4 or target.shape[1:] != features.shape[1:] or target.shape[0] not in (1, features.shape[0]):
        raise ValueError(
            f"content target has shape {tuple(target.shape)} but features have {tuple(features.shape)}: "
            "compute both at the same layer and image size (a target of batch 1 is broadcast)"
        )
    return torch.mean((features - target.detach()) ** 2)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance between Gram matrices, averaged over the batch.

    ``L = 1/B sum_b || gram_matrix(F)[b] - A ||_F^2`` (summed over the ``C x C`` entries).
    ``target_gram`` is ``[C, C]``, ``[1, C, C]`` (broadcast over the batch) or ``[B, C, C]``.
    """
    gram = gram_matrix(features)
    target = target_gram.detach()
    if target.dim() == 2:
        target = target.unsqueeze(0)
    if target.dim() != 3 or target.shape[-2:] != gram.shape[-2:] or target.shape[0] not in (1, gram.shape[0]):
        raise ValueError(
            f"target_gram has shape {tuple(target_gram.shape)}; expected [C, C], [1, C, C] or [B, C, C] "
            f"with C = {gram.shape[-1]} (the features' channels)"
        )
    return ((gram - target) ** 2).sum(dim=(1, 2)).mean()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Squared total variation: how much neighbouring pixels differ.

    ``TV(x) = mean_{b,c,i,j} (x[i+1, j] - x[i, j])^2 + mean_{b,c,i,j} (x[i, j+1] - x[i, j])^2``,
    each mean over the differences that exist (``H-1`` rows, ``W-1`` columns). Zero exactly
    for a constant image; a smoothness regulariser (Mahendran & Vedaldi 2015, beta = 2).
    """
    _check_features(image, "image")
    if image.shape[-1] < 2 or image.shape[-2] < 2:
        raise ValueError(f"image of shape {tuple(image.shape)} is too small for total variation (needs 2x2 pixels)")
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return (dy**2).mean() + (dx**2).mean()
