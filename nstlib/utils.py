"""Small helpers: pick a device, seed every random number generator."""

from __future__ import annotations

import random

import numpy as np
import torch

from . import quick


def get_device(prefer: str | None = None, verbose: bool = False) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` ("cuda", "mps", "cpu") forces a choice and raises ``ValueError``
    when that device is not available. With ``verbose=True`` it prints what it
    picked and, without a GPU, how to get one on Colab (and the quick-mode banner when
    quick mode is on, so notebooks show it in their setup cell).
    """
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={prefer!r} is not one of 'cuda', 'mps', 'cpu'") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu' or enable a GPU")
        if device.type == "mps" and not _mps_available():
            raise ValueError("device='mps' was asked for but Apple's MPS is not available; use device='cpu'")
        if device.type not in {"cuda", "mps", "cpu"}:
            raise ValueError(f"device={prefer!r} is not one of 'cuda', 'mps', 'cpu'")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif _mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        if quick.is_quick():
            quick.announce()
        if device.type == "cuda":
            print(f"Using GPU: {torch.cuda.get_device_name(device)}")
        elif device.type == "mps":
            print("Using Apple GPU (MPS)")
        else:
            print(
                "Using the CPU (no GPU found). Everything works, just slower: keep sizes small.\n"
                "On Colab: Runtime > Change runtime type > Hardware accelerator: GPU, then rerun."
            )
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def set_seed(seed: int) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU); returns ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed
