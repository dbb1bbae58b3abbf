"""Maintaining the course itself (instructors and maintainers; students never need this).

``python -m nstlib.course build``
    Build the whole course: execute every notebook in ``notebooks/`` and render the HTML book.
``python -m nstlib.course refresh [NOTEBOOK ...]``
    Re-execute notebooks in quick mode and store only the outputs that nbval checks: those of
    cells whose first line is ``# NBVAL_CHECK_OUTPUT`` (deterministic, weight-independent cells).
    Every other output and execution count is stripped, so the notebooks stay small and clean.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def notebook_paths(folder: Path = NOTEBOOKS) -> list[Path]:
    """The course's notebooks, in order (``NN_name.ipynb``)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def is_checked(cell) -> bool:
    """True for a code cell that nbval compares (its first line is ``# NBVAL_CHECK_OUTPUT``)."""
    return cell.get("cell_type") == "code" and cell.get("source", "").lstrip().startswith(CHECK_MARK)


def strip_outputs(nb) -> None:
    """Remove outputs and execution counts of every cell nbval does not check, in place."""
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            for output in cell.outputs:
                output.pop("execution_count", None)
        else:
            cell.outputs = []
            cell.execution_count = None


def execute(path: Path, *, quick: bool = True, timeout: int = 600):
    """Execute a notebook in its own folder (quick mode by default) and return it."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("NSTLIB_QUICK")
    os.environ["NSTLIB_QUICK"] = "1" if quick else "0"
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        if previous is None:
            os.environ.pop("NSTLIB_QUICK", None)
        else:
            os.environ["NSTLIB_QUICK"] = previous
    return nb


def refresh(paths: list[Path]) -> None:
    """Execute each notebook in quick mode and keep only the checked outputs."""
    import nbformat

    from .fileio import atomic_write_text

    for path in paths:
        print(f"refreshing {path.name} (quick mode) ...", flush=True)
        nb = execute(path, quick=True)
        strip_outputs(nb)
        atomic_write_text(path, nbformat.writes(nb) + "\n")


def build() -> int:
    """Execute every notebook into ``results/executed`` (the HTML book builds on this)."""
    import nbformat

    from .fileio import atomic_write_text
    from .settings import quick_mode, results_dir

    out = results_dir() / "executed"
    for path in notebook_paths():
        print(f"executing {path.name}{' (quick mode)' if quick_mode() else ''} ...", flush=True)
        nb = execute(path, quick=quick_mode())
        atomic_write_text(out / path.name, nbformat.writes(nb) + "\n")
    print(f"executed notebooks are in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nstlib.course", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="execute every notebook and render the HTML book")
    refresh_parser = commands.add_parser("refresh", help="re-execute notebooks in quick mode, keep only checked outputs")
    refresh_parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    args = parser.parse_args(argv)
    if args.command == "refresh":
        refresh(args.notebooks or notebook_paths())
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
