"""Keep freed memory for reuse: glibc's ``malloc`` tuned for tensors that are freed and made again.

Every layer of a network run on a CPU makes new tensors, and at 1024x768 several of them are 25-50 MB
(32 channels of a full-size image in bfloat16 are 50 MB). glibc's ``malloc`` serves a block that large
with a fresh ``mmap`` and gives it back to the operating system when it is freed (blocks above
``M_MMAP_THRESHOLD``, which glibc raises by itself to at most 32 MB, and free memory at the top of the
heap above ``M_TRIM_THRESHOLD``). The next layer's tensor is then mapped anew, and the kernel zeroes
and maps it one 4 KiB page at a time as it is first written: about 12,800 page faults for 50 MB,
some 20 ms on two cores, more than a third of the time of the convolution that wrote it.

:func:`reuse_freed_memory` raises both thresholds to :data:`THRESHOLD` with ``mallopt``, so that
freed blocks stay in the process and later tensors reuse them: on two cores, one 2x2 convolution
writing 50 MB went from 53 ms to 33 ms, the fast network in bfloat16 at 1024x768 from 0.91 s to
0.68-0.74 s, float32 PyTorch from 3.3 s to 2.0-2.2 s (``benchmarks/README.md``). It is what
PyTorch's CPU tuning guide gets by preloading jemalloc or tcmalloc, done from Python for the running
process. The price: memory the process has freed stays with it (its resident size stays near its
peak, about 200 MB more after one 1024x768 photo) until :func:`release_freed_memory` hands it back.

The CPU backends of :func:`nstlib.stylize_image` call :func:`reuse_freed_memory` before their first
run; set the environment variable ``NSTLIB_REUSE_MEMORY=0`` to leave ``malloc`` as it is. Elsewhere
than on Linux with glibc (macOS, Windows, musl) both functions do nothing and return False.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ENVIRONMENT_VARIABLE", "THRESHOLD", "describe", "release_freed_memory", "reuse_freed_memory"]

THRESHOLD = 1 << 30
"""Blocks up to 1 GiB come from the heap and freed memory up to 1 GiB stays in it."""
ENVIRONMENT_VARIABLE = "NSTLIB_REUSE_MEMORY"
"""Set to ``0`` (or ``false``, ``no``, ``off``) to keep glibc's defaults."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
_applied = False


def _glibc():
    """The C library as a ``ctypes`` handle when it is glibc, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _wanted() -> bool:
    return os.environ.get(ENVIRONMENT_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


def reuse_freed_memory(*, force: bool = False) -> bool:
    """Raise glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to :data:`THRESHOLD` for this process.

    Returns True when the thresholds are set (now or by an earlier call), False where the C library is
    not glibc or ``NSTLIB_REUSE_MEMORY=0`` asks to leave it alone (``force=True`` ignores the variable).
    """
    global _applied
    if _applied:
        return True
    if not (force or _wanted()):
        return False
    libc = _glibc()
    if libc is None:
        return False
    _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
    return _applied


def release_freed_memory() -> bool:
    """Give the memory the process has freed back to the operating system now (glibc's ``malloc_trim``).

    Returns True when some was given back, False when none was or the C library is not glibc. Later
    tensors are mapped anew (and page-faulted in) until freed memory has built up again.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def describe() -> str:
    """One line for ``nstlib info``: what :func:`reuse_freed_memory` has done or would do in this process."""
    if _glibc() is None:
        return "left to the C library (not glibc: nothing to tune)"
    if _applied:
        return f"kept for reuse (mallopt thresholds {THRESHOLD >> 20} MiB)"
    if not _wanted():
        return f"glibc's defaults ({ENVIRONMENT_VARIABLE}=0)"
    return "kept for reuse once a fast CPU path runs (glibc's defaults until then)"
