"""``python -m nstlib``: the same command line as ``nstlib`` (see :mod:`nstlib.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
