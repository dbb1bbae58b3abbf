"""Settings read from environment variables, documented in one place.

=====================  ==========================================================
``NSTLIB_QUICK``       ``1`` turns on quick mode (see :mod:`nstlib.quick`).
``NSTLIB_CACHE``       folder for downloads; default ``$XDG_CACHE_HOME/nstlib``
                       or ``~/.cache/nstlib``.
``NSTLIB_MIRROR``      a local folder or a base URL holding copies of the sample
                       images under their manifest paths (``style/wave.jpg``);
                       used instead of the pinned URLs, with the same checks.
``NSTLIB_RESULTS``     folder where notebooks and the command line write results;
                       default ``results/`` in the current folder.
=====================  ==========================================================

Each function reads the environment when called, so a change made after import
(for instance by a test or a notebook cell) takes effect at once.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_QUICK = "NSTLIB_QUICK"
ENV_CACHE = "NSTLIB_CACHE"
ENV_MIRROR = "NSTLIB_MIRROR"
ENV_RESULTS = "NSTLIB_RESULTS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode() -> bool:
    """True when ``NSTLIB_QUICK`` is set to 1/true/yes/on."""
    value = os.environ.get(ENV_QUICK, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{ENV_QUICK}={os.environ[ENV_QUICK]!r} is not understood: set it to 1 for quick mode or 0 (or unset it) for real runs"
    )


def cache_dir() -> Path:
    """The download cache folder (not created here)."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nstlib"


def mirror() -> str | None:
    """The mirror (local folder or base URL) for sample images, or None."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    return value or None


def results_dir() -> Path:
    """Where results are written (not created here)."""
    return Path(os.environ.get(ENV_RESULTS) or "results").expanduser()
