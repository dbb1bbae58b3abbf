"""Fast stylisation: run a trained :class:`~nstlib.TransformerNet` on photos.

One forward pass per image, no gradients: ``clamp(net(image), 0, 1)``. :func:`stylize_image`
takes one image, :func:`stylize_images` a batch or a list (grouped by size, run in chunks of
``batch_size``). Both put the network in eval mode for the call and restore its mode after.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["stylize_image", "stylize_images"]

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
