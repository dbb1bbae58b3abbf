"""bfloat16 on the CPU: is it native here, and the autocast context for a device and a dtype.

bfloat16 keeps float32's 8 exponent bits and 7 of its 23 mantissa bits (a relative rounding error
of ``2**-8 = 0.4 %``). Many recent CPUs multiply it natively: x86 with AVX512-BF16 (Intel Cooper
Lake and newer Xeons, AMD Zen 4 and newer) or AMX (Intel Sapphire Rapids and newer), Arm with the
BF16 extension (Apple M2 and newer, AWS Graviton 3 and newer). Under
``torch.autocast("cpu", dtype=torch.bfloat16)`` VGG19's convolutions then run in bfloat16 through
oneDNN, while :func:`nstlib.gram_matrix` switches autocast off and the losses stay float32.

Without native instructions bfloat16 is emulated and slower than float32, so
:func:`cpu_bfloat16` checks the CPU's flags and runs a tiny probe; :func:`choose` turns a
``precision`` option into the dtype to use, with a warning (and float32) where bfloat16 was
asked for but is not native.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import subprocess
import warnings
from pathlib import Path

import torch

PRECISIONS = ("float32", "bfloat16", "auto")
"""``"float32"``: no autocast. ``"bfloat16"``: autocast to bfloat16 (a warning and float32 where the
device has no native bfloat16). ``"auto"``: bfloat16 where native on a CPU, float32 elsewhere."""

NATIVE_X86 = ("avx512_bf16", "amx_bf16")
"""Linux ``/proc/cpuinfo`` flags of x86 CPUs that compute bfloat16 natively."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags: ``/proc/cpuinfo`` ("flags" on x86, "Features" on Arm) on Linux, the
    ``hw.optional.arm.FEAT_BF16`` sysctl (as ``"bf16"``) on macOS; empty where neither can be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags and platform.system() == "Darwin":
        try:
            answer = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                    timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            answer = ""
        if answer == "1":
            flags.add("bf16")
    return flags


def _probe() -> str | None:
    """A 3x3 convolution under CPU autocast: None when it gives a finite bfloat16 result, else what went wrong."""
    try:
        generator = torch.Generator().manual_seed(0)
        x, w = torch.rand(1, 3, 8, 8, generator=generator), torch.rand(4, 3, 3, 3, generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = torch.nn.functional.conv2d(x, w)
    except RuntimeError as error:
        return f"autocast failed ({error})"
    reference = torch.nn.functional.conv2d(x, w)
    if y.dtype != torch.bfloat16 or not torch.allclose(y.float(), reference, rtol=2e-2, atol=2e-2):
        return f"autocast gave {y.dtype} results that do not match float32"
    return None


@functools.lru_cache(maxsize=None)
def cpu_bfloat16() -> tuple[bool, str]:
    """``(native, why)``: whether this CPU computes bfloat16 natively (its flags, then :func:`_probe`),
    and a sentence saying what was found (torch's vectorisation level included)."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    found = sorted(flags & {*NATIVE_X86, "bf16"})
    if not found:
        return False, (f"this CPU ({platform.machine()}, torch kernels: {capability}) has no native bfloat16 "
                       "instructions (AVX512-BF16, AMX or Arm BF16), so bfloat16 would be emulated and slower")
    problem = _probe()
    if problem is not None:
        return False, f"this CPU has {', '.join(found)}, but {problem}"
    return True, f"this CPU computes bfloat16 natively ({', '.join(found)}; torch kernels: {capability})"


def choose(precision: str, device: torch.device, argument: str = "precision") -> torch.dtype | None:
    """The autocast dtype for ``precision`` (:data:`PRECISIONS`) on ``device``, or None for float32.

    ``"bfloat16"`` on a CPU without native bfloat16, on a GPU without it, or on MPS warns
    (``UserWarning``, saying why) and gives None; ``"auto"`` chooses quietly.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{argument}={precision!r} must be one of {', '.join(map(repr, PRECISIONS))}")
    if precision == "float32":
        return None
    if device.type == "cpu":
        native, why = cpu_bfloat16()
    elif device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        why = f"{torch.cuda.get_device_name(device)} {'supports' if native else 'does not support'} bfloat16"
    else:
        native, why = False, f"bfloat16 autocast is not offered on {device.type}"
    if native:
        return torch.bfloat16
    if precision == "bfloat16":
        warnings.warn(f"{argument}='bfloat16' ignored: {why}; computing in float32", UserWarning, stacklevel=3)
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast(device.type, dtype)``, or a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
