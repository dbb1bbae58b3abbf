"""Where a notebook run leaves its results: images and a ``metrics.json``.

Papermill batches run each notebook with its own ``RESULTS_DIR`` and read ``metrics.json``
back, so every notebook that produces a result ends by calling :func:`save_run`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from . import settings
from .fileio import atomic_write_json


def results_path(name: str, results_dir: str | os.PathLike | None = None) -> Path:
    """``results_dir`` (default ``$NSTLIB_RESULTS`` or ``results/``) / ``name``, created."""
    folder = Path(results_dir) if results_dir else settings.results_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _plain(value):
    """``value`` made JSON-friendly: tensors to lists, paths to strings, NaN to None."""
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: Mapping, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON, atomically (tensors become lists, NaN becomes null)."""
    return atomic_write_json(path, _plain(data))


def save_run(results_dir: str | os.PathLike, metrics: Mapping, images: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Save ``images`` as ``<name>.png`` and ``metrics`` as ``metrics.json`` in ``results_dir``.

    ``metrics`` gains ``"images": [file names]`` and ``"quick": bool``. Returns the folder.
    """
    from . import quick
    from .images import save_image

    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, image in (images or {}).items():
        save_image(image, folder / f"{name}.png")
        names.append(f"{name}.png")
    write_json({**metrics, "images": names, "quick": quick.is_quick()}, folder / "metrics.json")
    return folder
