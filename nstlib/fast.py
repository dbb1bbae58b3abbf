"""Fast stylisation: run a trained :class:`~nstlib.TransformerNet` on photos.

One forward pass per image, no gradients: ``clamp(net(image), 0, 1)``. :func:`stylize_image`
takes one image, :func:`stylize_images` a batch or a list (grouped by size, run in chunks of
``batch_size``). Both put the network in eval mode for the call and restore its mode after.

Backends (``backend=``), the same network computed four ways on a CPU:

* ``"torch"``: PyTorch in float32, ``net(image)`` exactly (the reference; the only choice on a GPU).
* ``"bfloat16"``: the network rewritten for the CPU (:class:`nstlib.inference.CPUInference`:
  channels-last, sub-pixel up-sampling, a space-to-depth last layer; the same function) with weights
  and activations in bfloat16 (8 significant bits instead of 24), about 4x faster than float32
  where the CPU multiplies bfloat16 natively (:func:`native_bfloat16`); the picture differs from
  float32 by rounding only (PSNR about 41 dB, ``benchmarks/README.md``).
* ``"onnx"``: the network exported to ONNX (:mod:`nstlib.export`) and run by ONNX Runtime in
  float32 (an optional dependency); equal to float32 PyTorch up to rounding (PSNR > 60 dB). Not
  picked by ``"auto"``: the rewritten float32 network was faster in every measurement (also with
  PyTorch held to AVX2 instructions and ONNX Runtime not), needs no extra package and takes ``style=``.
* ``"float32"``: the rewritten network of ``"bfloat16"`` in float32: no extra dependency, equal to
  ``"torch"`` up to rounding, about 1.5x faster on CPUs (``benchmarks/README.md``).

``"bfloat16"`` and ``"float32"`` also ask glibc's ``malloc`` to keep freed memory for the next
tensors (:mod:`nstlib.cpu_memory`; ``NSTLIB_REUSE_MEMORY=0`` leaves it alone): at 1024x768 a layer's
output is up to 50 MB, and mapping it afresh from the operating system each time costs about a fifth
of the run.

``"auto"`` (default) picks, on a CPU and for images of at least :data:`AUTO_MIN_PIXELS`, the
first available of :data:`AUTO_ORDER` (:func:`cpu_backend`): ``"bfloat16"`` where the CPU
multiplies bfloat16 natively, else ``"float32"``; and otherwise ``"torch"``: on a GPU, for small
images (the one-off cost of preparing a fast path is not repaid), and when ``dtype`` or
``channels_last`` ask for PyTorch options.
The fast paths are prepared once per network and reused; they are rebuilt when the weights change
(the cache is keyed on the weights' version counters). If preparing one fails, ``"auto"`` warns and
falls back to ``"torch"``.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import warnings
import weakref
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .config import progress_bar
from .cpu_memory import reuse_freed_memory
from .inference import CPUInference
from .transform_net import TransformerNet

__all__ = ["AUTO_MIN_PIXELS", "AUTO_ORDER", "BACKENDS", "cpu_backend", "native_bfloat16", "stylize_image",
           "stylize_images"]

BACKENDS = ("auto", "torch", "bfloat16", "onnx", "float32")
AUTO_ORDER = ("bfloat16", "float32")
"""What ``backend="auto"`` tries on a CPU, fastest first (``benchmarks/run.py --only fast-cpu``); "float32" is always available."""
STYLE_FREE = ("onnx",)
"""Backends that cannot take ``style=`` (the exported graph holds style 0)."""
AUTO_MIN_PIXELS = 256 * 256
"""``backend="auto"`` keeps float32 PyTorch for images of fewer pixels than this."""


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
         channels_last: bool, style=None) -> torch.Tensor:
    """``net(batch)`` on ``device`` without gradients, optionally under autocast; float32 on the CPU, clamped."""
    batch = batch.to(device=device, dtype=_net_dtype(net))
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    kwargs = {} if style is None else {"style": style}  # style: multi-style networks only
    if dtype is None or dtype == torch.float32:
        out = net(batch, **kwargs)
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            out = net(batch, **kwargs)
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


# --------------------------------------------------------------------------- CPU backends


@functools.lru_cache(maxsize=8)
def native_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 natively: the x86 flags ``avx512_bf16`` or ``amx_bf16``.

    (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later.) Elsewhere bfloat16 is
    emulated and no faster than float32. Read from ``cpuinfo`` (Linux) once; False where it cannot be read.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _available(backend: str) -> bool:
    if backend == "bfloat16":
        return native_bfloat16()
    if backend == "onnx":
        from .export import onnx_backend_available

        return onnx_backend_available()
    return backend in ("torch", "float32")


def cpu_backend(*, style: bool = False) -> str:
    """The backend ``"auto"`` uses on this CPU for large images: the first of :data:`AUTO_ORDER` available
    (``"bfloat16"`` needs :func:`native_bfloat16`, ``"onnx"`` the ``nstlib[onnx]`` extra; ``"float32"``
    needs nothing); with ``style=True`` (a ``style=`` argument) the first that takes one (not
    :data:`STYLE_FREE`, should the order ever hold one)."""
    return next(name for name in AUTO_ORDER if not (style and name in STYLE_FREE) and _available(name))


def _choose(backend: str, device: torch.device, *, pixels: int, torch_options: bool, style) -> str:
    """The backend to run: ``backend`` checked, or what "auto" means for this call."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {BACKENDS} (\"torch\": plain float32 PyTorch)")
    if backend == "auto":
        if device.type != "cpu" or torch_options or pixels < AUTO_MIN_PIXELS:
            return "torch"
        return cpu_backend(style=style is not None)
    if backend != "torch":
        if device.type != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU, but the device is {device}: "
                             "pass device=\"cpu\" or use backend=\"torch\"")
        if torch_options:
            raise ValueError(f"backend={backend!r} runs the network as it is: dtype and channels_last "
                             "are options of backend=\"torch\"")
        if style is not None and backend in STYLE_FREE:
            raise ValueError(f"backend={backend!r} runs style 0 of a multi-style network only: for style= use "
                             "backend=\"bfloat16\", \"float32\" or \"torch\"")
    return backend


def _weights_key(net: nn.Module) -> tuple:
    """Changes when any weight does: each state-dict tensor's storage, shape and version counter.

    PyTorch bumps a tensor's version counter on every in-place change (an optimiser step, ``add_``
    under ``no_grad``, ``load_state_dict``), and assigning new tensors changes the storage; checking
    costs microseconds, where hashing 6.7 MB of weights would cost milliseconds per image. Not seen:
    in-place changes through ``p.data`` (write ``with torch.no_grad(): p.add_(...)`` instead).
    """
    tensors = tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype)
                    for name, t in net.state_dict(keep_vars=True).items())
    return type(net).__qualname__, repr(getattr(net, "config", None)), tensors


def _rewritten_runner(net: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """:class:`~nstlib.inference.CPUInference` for a TransformerNet; a ``dtype`` copy of any other network.

    Also keeps freed memory in the process for the next tensors (:func:`nstlib.cpu_memory.reuse_freed_memory`,
    unless ``NSTLIB_REUSE_MEMORY=0``): each layer's large outputs are then not page-faulted in anew."""
    reuse_freed_memory()
    if isinstance(net, TransformerNet):
        forward = CPUInference(net, dtype)
    else:
        forward = copy.deepcopy(net).to(device="cpu", dtype=dtype).eval()

    def run(batch: torch.Tensor, style=None) -> torch.Tensor:
        kwargs = {} if style is None else {"style": style}
        out = forward(batch.to(device="cpu", dtype=dtype), **kwargs)
        return out.float().contiguous().clamp_(0, 1)

    return run


def _onnx_runner(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from .export import INPUT_NAME, export_onnx, onnx_session

    session = onnx_session(export_onnx(net))

    def run(batch: torch.Tensor, style=None) -> torch.Tensor:  # style: None (checked by _choose)
        array = batch.to(device="cpu", dtype=torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {INPUT_NAME: array})[0]).clamp_(0, 1)

    return run


_RUNNERS = {"bfloat16": functools.partial(_rewritten_runner, dtype=torch.bfloat16), "onnx": _onnx_runner,
            "float32": functools.partial(_rewritten_runner, dtype=torch.float32)}
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
"""Per network: ``{backend: (key, runner or None)}``; ``key``: :func:`_weights_key` and the thread count."""


def _fast_runner(net: nn.Module, backend: str, auto: bool) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The prepared ``backend`` for ``net`` (cached, rebuilt when the weights change); None when "auto"
    could not prepare it (a warning says why, once per set of weights)."""
    key = (_weights_key(net), torch.get_num_threads())
    entries = _CACHE.setdefault(net, {})
    cached = entries.get(backend)
    if cached is not None and cached[0] == key and (cached[1] is not None or auto):
        return cached[1]  # (a failure is remembered for "auto"; an explicit backend tries again and raises)
    try:
        runner = _RUNNERS[backend](net)
    except Exception as error:
        if not auto:
            raise
        warnings.warn(f"backend {backend!r} could not be prepared ({type(error).__name__}: {error}); "
                      "running float32 PyTorch instead", RuntimeWarning, stacklevel=3)
        runner = None
    entries[backend] = (key, runner)
    return runner


def _runner(net: nn.Module, backend: str, device: torch.device, dtype, channels_last: bool, style,
            pixels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``batch -> clamp(net(batch), 0, 1)`` (float32, CPU) for the chosen backend."""
    torch_options = (dtype is not None and dtype != torch.float32) or channels_last
    chosen = _choose(backend, device, pixels=pixels, torch_options=torch_options, style=style)
    if chosen != "torch":
        runner = _fast_runner(net, chosen, auto=backend == "auto")
        if runner is not None:
            return lambda batch: runner(batch, style)
    return lambda batch: _run(net, batch, device, dtype, channels_last, style)


def stylize_image(net: nn.Module, image: torch.Tensor, *, device=None, dtype: torch.dtype | None = None,
                  channels_last: bool = False, style=None, backend: str = "auto") -> torch.Tensor:
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
        style: for a multi-style ``TransformerNet(num_styles=N)``: a style index or ``N`` blend
            weights, passed on as ``net(image, style=style)``; None (default) calls ``net(image)``.
        backend: ``"auto"`` (default), ``"torch"`` (float32 PyTorch, exactly ``net(image)``),
            ``"bfloat16"``, ``"float32"`` or ``"onnx"`` (CPU only); see the module docstring. ``"auto"`` runs the
            fastest path that keeps the picture on a CPU, ``"torch"`` elsewhere.

    Runs without gradients in eval mode and restores the network's training mode afterwards.
    """
    image = _as_batch(image, "image")
    device, was_training = _prepare(net, device, channels_last)
    try:
        with torch.no_grad():
            run = _runner(net, backend, device, dtype, channels_last, style, pixels=image.shape[-2] * image.shape[-1])
            return run(image)
    finally:
        net.train(was_training)


def stylize_images(net: nn.Module, images: torch.Tensor | Sequence[torch.Tensor], *, batch_size: int = 4,
                   device=None, dtype: torch.dtype | None = None, channels_last: bool = False,
                   progress: bool = False, style=None, backend: str = "auto") -> torch.Tensor | list[torch.Tensor]:
    """Stylise many images, batching those of equal size; same options as :func:`stylize_image`.

    ``images`` is either a batch tensor ``[B, 3, H, W]`` (returns ``[B, 3, H, W]``) or a list
    of ``[3, H, W]`` / ``[1, 3, H, W]`` tensors of any sizes (returns a list of ``[1, 3, H, W]``
    in the same order). Images of the same size run together, ``batch_size`` at a time.
    Because instance normalisation works per image, the result equals stylising each image
    alone (up to floating-point rounding). Results are clamped float32 CPU tensors. ``style``: an
    index or a weight vector for a multi-style network, the same for every image. ``backend``: as for
    :func:`stylize_image`, chosen once for the call (``"auto"`` by the largest image).
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
        pixels = max((image.shape[-2] * image.shape[-1] for image in items), default=0)
        with torch.no_grad(), progress_bar(total=len(items), desc="stylize", unit="img", disable=not progress) as bar:
            run = _runner(net, backend, device, dtype, channels_last, style, pixels=pixels)
            for indices in groups.values():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    out = run(torch.cat([items[i] for i in chunk]))
                    for j, i in enumerate(chunk):
                        results[i] = out[j:j + 1]
                    bar.update(len(chunk))
    finally:
        net.train(was_training)
    if as_tensor:
        return torch.cat(results) if results else images.new_zeros((0, 3) + tuple(images.shape[-2:])).cpu()
    return results
