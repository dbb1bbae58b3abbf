"""Maintaining the course itself (instructors and maintainers; students never need this).

``python -m nstlib.course build [--skip-gallery] [--workers N] [--path-output DIR]``
    Build the whole course: run the gallery's papermill batches (``book/grids/*.yaml``, results in
    ``$NSTLIB_RESULTS/batch/<grid>``), then render the HTML book with Jupyter Book, which executes every
    notebook (cached) into ``book/_build/html``. With ``NSTLIB_QUICK=1`` everything runs at smoke-test
    scale and offline, and every page of the book says so.
``python -m nstlib.course refresh [NOTEBOOK ...]``
    Re-execute notebooks in quick mode and store only the outputs that nbval checks: those of
    cells whose first line is ``# NBVAL_CHECK_OUTPUT`` (deterministic, weight-independent cells).
    Every other output and execution count is stripped, so the notebooks stay small and clean.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
GRIDS = BOOK / "grids"


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


def gallery_grids(folder: Path = GRIDS) -> list[Path]:
    """The gallery's batch grid files (``book/grids/*.yaml``), sorted by name."""
    return sorted(folder.glob("*.yaml"))


def gallery_output(grid: str | os.PathLike) -> Path:
    """Where the batch of ``grid`` leaves its runs, figure and table: ``$NSTLIB_RESULTS/batch/<grid name>``.

    Absolute (a relative ``NSTLIB_RESULTS`` is taken from the current folder); ``make course`` sets
    ``NSTLIB_RESULTS`` to the repository's ``results/``. The book's gallery page looks here too.
    """
    from .settings import results_dir

    return (results_dir() / "batch" / Path(grid).stem).resolve()


def run_gallery(grids: list[Path] | None = None, *, workers: int = 2) -> list[str]:
    """Run every gallery batch (resumable: complete runs are skipped); returns the names of failed runs.

    In quick mode :mod:`nstlib.batch` keeps only the first values of each grid axis (a smoke test).
    Grids whose figure plots seconds run with one worker, so that parallel runs do not disturb the timings.
    """
    from .batch import load_grid, run_batch

    failed = []
    for grid_path in gallery_grids() if grids is None else grids:
        figure = load_grid(grid_path).figure or {}
        # A grid that measures seconds runs one notebook at a time: parallel runs would disturb the timings.
        timing = "seconds" in str(figure.get("y", ""))
        grid = run_batch(grid_path, output=gallery_output(grid_path), workers=1 if timing else workers)
        failed += [f"{grid_path.stem}/{run.folder.name}" for run in grid.runs if not run.is_complete()]
    return failed


def book_command(path_output: Path = BOOK) -> list[str]:
    """The ``jupyter-book build`` command line of the course book (an argument list, for no shell).

    The source folder is the repository root (the notebooks stay in ``notebooks/`` and the launch buttons
    find them there); configuration and table of contents come from ``book/``; warnings are errors, and
    ``--keep-going`` reports all of them before failing. The HTML goes to ``<path_output>/_build/html``.
    """
    script = Path(sys.executable).with_name("jupyter-book")
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: install the course's dev extras (pip install -e '.[dev]')")
    return [str(script), "build", str(ROOT), "--path-output", str(path_output),
            "--config", str(BOOK / "_config.yml"), "--toc", str(BOOK / "_toc.yml"),
            "--warningiserror", "--keep-going"]


def build_book(path_output: Path = BOOK) -> Path:
    """Render the HTML book with Jupyter Book, executing the notebooks (cached); returns ``index.html``.

    Runs in the repository root with this Python's environment first on ``PATH``, so the notebooks'
    kernels are the course's environment. Raises ``RuntimeError`` when the build fails (a failing cell
    or any Sphinx warning).
    """
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    argv = book_command(Path(path_output).resolve())
    print("building the book:", " ".join(argv), flush=True)
    status = subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
    if status:
        raise RuntimeError(f"jupyter-book build failed (exit status {status}); the cause is printed above")
    return Path(path_output).resolve() / "_build" / "html" / "index.html"


def build(*, gallery: bool = True, workers: int = 2, path_output: Path = BOOK) -> int:
    """Build the whole course: run the gallery batches, then render the HTML book; returns an exit status.

    1. Every grid of ``book/grids`` runs with papermill (:func:`run_gallery`, resumable), unless
       ``gallery`` is false; its figure lands in :func:`gallery_output`.
    2. ``jupyter-book build`` (:func:`book_command`) executes every notebook (``execute_notebooks: cache``)
       and renders the book, the gallery included (a missing figure is a note on the page, not an error).

    Prints where the HTML is. Returns 1 when a batch run failed (the book is built anyway), 0 otherwise.
    """
    from .settings import quick_mode

    mode = "QUICK MODE (NSTLIB_QUICK=1): smoke-test scale, offline" if quick_mode() else "full course"
    print(f"building the course: {mode}", flush=True)
    failed = run_gallery(workers=workers) if gallery else []
    index = build_book(path_output)
    print(f"\nThe book is ready: {index}" + (" (quick mode: not real results)" if quick_mode() else ""))
    if failed:
        print(f"{len(failed)} gallery run(s) failed: {', '.join(failed)}; their cells stay blank. "
              "Their notebooks are in the runs' folders; fix and run `make course` again (complete runs are kept).",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nstlib.course", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="run the gallery batches and render the HTML book (notebooks executed)")
    build_parser.add_argument("--skip-gallery", action="store_true", help="do not run the gallery batches")
    build_parser.add_argument("--workers", type=int, default=2, help="gallery runs executed in parallel (default 2)")
    build_parser.add_argument("--path-output", type=Path, default=BOOK,
                              help="the HTML goes to PATH_OUTPUT/_build/html (default: book)")
    refresh_parser = commands.add_parser("refresh", help="re-execute notebooks in quick mode, keep only checked outputs")
    refresh_parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    args = parser.parse_args(argv)
    if args.command == "refresh":
        refresh(args.notebooks or notebook_paths())
        return 0
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: must be at least 1")
    from .batch import GridError

    try:
        return build(gallery=not args.skip_gallery, workers=args.workers, path_output=args.path_output)
    except (RuntimeError, FileNotFoundError, GridError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
