"""A trained :class:`~nstlib.TransformerNet` as an ONNX model, run by ONNX Runtime on the CPU.

The network is the same: :func:`export_onnx` traces ``net(image)`` in float32 into an ONNX graph
(the same convolutions, instance norms and paddings, nothing approximated) with the batch size,
height and width left free, so one export serves every photo size. ONNX Runtime then runs that
graph with its own CPU kernels and graph optimisations (convolution + ReLU fusion, blocked memory
layouts): on a 2-core CPU 1.5-2x faster than PyTorch's float32 path under glibc's default
``malloc``, about as fast once freed memory is kept (:mod:`nstlib.cpu_memory`), and slower than
the network rewritten for the CPU (``backend="float32"``), which is why ``backend="auto"`` does
not use it (``benchmarks/run.py --only fast-cpu`` measures it, ``benchmarks/README.md`` records
it). The outputs agree with PyTorch's to floating-point rounding: :func:`psnr` between the two is
far above 60 dB. Its use here: a model file for other tools (``nstlib export --format onnx``), and
``stylize_image(..., backend="onnx")``.

ONNX Runtime and the ``onnx`` package (which PyTorch's exporter writes the graph with) are an
optional dependency: ``pip install "nstlib[onnx]"`` (or ``pip install onnxruntime onnx``).
:func:`onnx_backend_available` says whether both can be imported; without them ``backend="onnx"``
raises an ImportError that says what to install.

    model = export_onnx(net, "candy.onnx")          # bytes, also written to the file
    session = onnx_session(model)                    # an onnxruntime.InferenceSession
    out = session.run(None, {"image": x.numpy()})[0]  # x: [B, 3, H, W] in [0, 1]
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import math
import os
import warnings

import torch
from torch import nn

from .fileio import atomic_write

__all__ = ["CHECK_PSNR_DB", "INPUT_NAME", "OUTPUT_NAME", "export_onnx", "onnx_backend_available", "onnx_session",
           "onnxruntime_available", "psnr"]

INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
OPSET = 17
"""ONNX opset of the export (InstanceNormalization, Pad with reflect mode, Resize: all in 17)."""

EXAMPLE_SIZE = (37, 50)
"""Height and width traced. Neither is a multiple of 4, so the padding to a multiple of 4 that
:class:`~nstlib.TransformerNet` does is recorded in the graph (traced at a multiple of 4, the
graph would skip it for every size)."""

CHECK_SIZES = ((37, 50), (48, 64))
CHECK_PSNR_DB = 60.0
""":func:`export_onnx` compares ONNX Runtime with PyTorch at :data:`CHECK_SIZES`; float32 rounding
gives well over 60 dB, a wrongly traced graph far less."""


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(peak^2 / mean((a - b)^2))``; ``inf`` when equal.

    For images in [0, 1]: 35 dB is a root-mean-square difference of 1.8% (4.5 grey levels of 255),
    48 dB is one grey level.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs two images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def onnxruntime_available() -> bool:
    """Whether ``import onnxruntime`` works."""
    return _importable("onnxruntime")


def onnx_backend_available() -> bool:
    """Whether both ``onnxruntime`` (to run) and ``onnx`` (to export) import: the extra ``nstlib[onnx]``."""
    return onnxruntime_available() and _importable("onnx")


def _onnxruntime():
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as error:
        raise ImportError("ONNX Runtime is not installed: pip install onnxruntime onnx (or pip install "
                          "\"nstlib[onnx]\"), or use backend=\"torch\"") from error


def onnx_session(model: bytes | str | os.PathLike, *, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for ``model`` (bytes or a file) on the CPU.

    All graph optimisations on; ``threads`` intra-op threads (default ``torch.get_num_threads()``,
    the number PyTorch would use, so the two are compared like for like).
    """
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _trace(net: nn.Module, opset: int) -> bytes:
    """``torch.onnx.export`` of ``net(image)`` (TorchScript tracing), dynamic batch, height and width."""
    axes = {0: "batch", 2: "height", 3: "width"}
    kwargs = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset,
              "dynamic_axes": {INPUT_NAME: axes, OUTPUT_NAME: axes}, "do_constant_folding": True}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the tracing exporter: no onnxscript needed, the same on every torch 2.x
    buffer = io.BytesIO()
    example = torch.rand(1, 3, *EXAMPLE_SIZE, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic, deprecation notices
        torch.onnx.export(net, (example,), buffer, **kwargs)
    return buffer.getvalue()


def _check(net: nn.Module, model: bytes) -> None:
    session = onnx_session(model, threads=1)
    g = torch.Generator().manual_seed(1)
    for height, width in CHECK_SIZES:
        x = torch.rand(1, 3, height, width, generator=g)
        with torch.no_grad():
            want = net(x).float().clamp(0, 1)
        got = torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0]).clamp(0, 1)
        value = psnr(got, want)
        if value < CHECK_PSNR_DB:
            raise RuntimeError(f"the ONNX export of {type(net).__name__} differs from PyTorch at {height}x{width} "
                               f"(PSNR {value:.1f} dB < {CHECK_PSNR_DB} dB): its forward has a branch the tracer "
                               "cannot record; run it with PyTorch (backend=\"torch\")")


def export_onnx(net: nn.Module, path: str | os.PathLike | None = None, *, opset: int = OPSET,
                check: bool = True) -> bytes:
    """Export ``net`` (float32, eval mode, on the CPU) to ONNX; returns the model and writes it to ``path``.

    The graph takes ``image``: ``[B, 3, H, W]`` float32 in [0, 1] (any ``B``, ``H``, ``W`` the network
    accepts) and returns ``stylized``, ``net(image)`` before clamping. ``net`` itself is not
    changed (a float32 CPU copy is traced when it lives elsewhere; its training mode is restored).
    With ``check`` (default) and ONNX Runtime installed, the export is run at two sizes and must
    match PyTorch (PSNR >= :data:`CHECK_PSNR_DB` dB), else ``RuntimeError``. The file is written
    atomically.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a TransformerNet (an nn.Module), got {type(net).__name__}")
    first = next(net.parameters(), None)
    on_cpu_float = first is None or (first.device.type == "cpu" and first.dtype == torch.float32)
    model_net = net if on_cpu_float else _cpu_float_copy(net)
    was_training = model_net.training
    model_net.eval()
    try:
        model = _trace(model_net, opset)
        if check and onnxruntime_available():
            _check(model_net, model)
    finally:
        model_net.train(was_training)
    if path is not None:
        atomic_write(path, lambda handle: handle.write(model))
    return model


def _cpu_float_copy(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).to(device="cpu", dtype=torch.float32)
