"""Colour spaces for colour-preserving style transfer (Gatys et al. 2017).

YIQ separates luminance ``Y`` from chrominance ``I, Q`` with a fixed linear map:

    Y =  0.299 R + 0.587 G + 0.114 B
    I =  0.596 R - 0.274 G - 0.322 B
    Q =  0.211 R - 0.523 G + 0.312 B

Luminance-only transfer stylises ``Y`` alone and puts the content's ``I, Q`` back.
"""

from __future__ import annotations

import torch

RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.596, -0.274, -0.322],
        [0.211, -0.523, 0.312],
    ]
)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be [batch, 3, height, width], got {tuple(image.shape)}")
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` to YIQ (same shape)."""
    return _apply(RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YIQ ``[B, 3, H, W]`` back to RGB (the exact inverse of :func:`rgb_to_yiq`)."""
    return _apply(torch.linalg.inv(RGB_TO_YIQ.double()).float(), image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Luminance ``Y`` of an RGB image, ``[B, 1, H, W]``."""
    return rgb_to_yiq(image)[:, :1]


def match_luminance(source_y: torch.Tensor, reference_y: torch.Tensor) -> torch.Tensor:
    """``source_y`` shifted and scaled to the mean and standard deviation of ``reference_y``.

    ``y' = (y - mean_s) * std_r / std_s + mean_r`` (Gatys et al. 2017, luminance matching of the
    style image to the content image before a luminance-only transfer).

    A flat source (standard deviation below 1e-6: float32 rounding alone leaves ~1e-8 on a
    one-colour image) has no contrast to scale and becomes the reference mean everywhere.
    """
    mean_s, std_s = source_y.mean(), source_y.std()
    if not float(std_s) > 1e-6:
        return torch.full_like(source_y, float(reference_y.mean()))
    return (source_y - mean_s) * (reference_y.std() / std_s) + reference_y.mean()


def combine_luminance(y: torch.Tensor, chroma_from: torch.Tensor) -> torch.Tensor:
    """RGB image with luminance ``y`` ``[B, 1, H, W]`` and the chrominance (I, Q) of ``chroma_from``."""
    iq = rgb_to_yiq(chroma_from)[:, 1:]
    if iq.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"luminance {tuple(y.shape)} and chrominance source {tuple(chroma_from.shape)} differ in size")
    return yiq_to_rgb(torch.cat([y, iq.expand(y.shape[0], -1, -1, -1)], dim=1))
