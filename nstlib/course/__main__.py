"""``python -m nstlib.course ...``: the same as ``nstlib book ...`` (see :mod:`nstlib.cli`)."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["book", *sys.argv[1:]]))
