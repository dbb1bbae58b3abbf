"""Where a notebook run leaves its results: images and a ``metrics.json``.

Papermill batches run each notebook with its own ``RESULTS_DIR`` and read ``metrics.json``
back, so every notebook that produces a result ends by calling :func:`save_run`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from . import config
from .fileio import atomic_write_json
from .images import save_image


def results_path(name: str, results_dir: str | os.PathLike | None = None) -> Path:
    """``results_dir`` (default ``$NSTLIB_RESULTS`` or ``results/``) / ``name``, created."""
    folder = Path(results_dir) if results_dir else config.results_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_run(results_dir: str | os.PathLike, metrics: Mapping, images: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Save ``images`` as ``<name>.png`` and ``metrics`` as ``metrics.json`` in ``results_dir``.

    ``metrics`` gains ``"images": [file names]`` and ``"quick": bool``. Returns the folder.
    """
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, image in (images or {}).items():
        save_image(image, folder / f"{name}.png")
        names.append(f"{name}.png")
    atomic_write_json(folder / "metrics.json", {**metrics, "images": names, "quick": config.quick_mode()})
    return folder
