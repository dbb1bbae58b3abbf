"""Maintaining the course itself (instructors and maintainers; students never need this).

``nstlib book build [--skip-gallery] [--workers N] [--path-output DIR]``
    Build the whole course: run the gallery's papermill batches (``book/grids/*.yaml``, results in
    ``$NSTLIB_RESULTS/batch/<grid>``), then render the HTML book with Jupyter Book, which executes every
    notebook (cached) into ``book/_build/html``. With ``NSTLIB_QUICK=1`` everything runs at smoke-test
    scale and offline, and every page of the book says so.
``nstlib book refresh [NOTEBOOK ...]``
    Re-execute notebooks in quick mode and store only the outputs that nbval checks: those of
    cells whose first line is ``# NBVAL_CHECK_OUTPUT`` (deterministic, weight-independent cells).
    Every other output and execution count is stripped, so the notebooks stay small and clean.

Before anything runs, a full build (not quick mode) checks once that what the course downloads is
cached or reachable (:func:`check_downloads`): the VGG19 weights, the sample images and the
pretrained models. Offline it stops with one message naming the three ways out (connect,
``NSTLIB_QUICK=1``, or ``NSTLIB_MIRROR`` / files placed by hand, with their paths), instead of
every batch run failing on the same download.

Both run on a checkout of the course: :func:`course_root` finds it from the current folder (the
nearest folder at or above it holding ``book/_config.yml`` and ``notebooks/``), never from where
the package is installed. ``python -m nstlib.course ...`` is the same as ``nstlib book ...``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"

PROBE_TIMEOUT = 5.0
"""Seconds :func:`check_downloads` waits for each host to answer."""


class OfflineError(RuntimeError):
    """Files the full course downloads are not cached and their hosts cannot be reached."""


def course_root(start: str | os.PathLike | None = None) -> Path:
    """The course checkout: the nearest folder at or above ``start`` (default: the current folder)
    that holds ``book/_config.yml`` and ``notebooks/``.

    Raises ``FileNotFoundError`` naming the folder searched and the fix when there is none.
    """
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "book" / "_config.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"{here} is not inside a checkout of the course (no book/_config.yml and notebooks/ "
                            "at or above it): run this from the repository's folder")


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """The course's notebooks, in order (``NN_name.ipynb``; default folder: the checkout's ``notebooks/``)."""
    folder = course_root() / "notebooks" if folder is None else Path(folder)
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

    from ..fileio import atomic_write_text

    for path in paths:
        print(f"refreshing {path.name} (quick mode) ...", flush=True)
        nb = execute(path, quick=True)
        strip_outputs(nb)
        atomic_write_text(path, nbformat.writes(nb) + "\n")


def gallery_grids(folder: Path | None = None) -> list[Path]:
    """The gallery's batch grid files (``book/grids/*.yaml``), sorted by name."""
    folder = course_root() / "book" / "grids" if folder is None else Path(folder)
    return sorted(folder.glob("*.yaml"))


def gallery_output(grid: str | os.PathLike) -> Path:
    """Where the batch of ``grid`` leaves its runs, figure and table: ``$NSTLIB_RESULTS/batch/<grid name>``.

    Absolute (a relative ``NSTLIB_RESULTS`` is taken from the current folder); ``make course`` sets
    ``NSTLIB_RESULTS`` to the repository's ``results/``. The book's gallery page looks here too.
    """
    from ..config import results_dir

    return (results_dir() / "batch" / Path(grid).stem).resolve()


def run_gallery(grids: list[Path] | None = None, *, workers: int = 2) -> list[str]:
    """Run every gallery batch (resumable: complete runs are skipped); returns the names of failed runs.

    In quick mode :mod:`nstlib.course.batch` keeps only the first values of each grid axis (a smoke test).
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


def book_command(path_output: Path | None = None) -> list[str]:
    """The ``jupyter-book build`` command line of the course book (an argument list, for no shell).

    The source folder is the repository root (the notebooks stay in ``notebooks/`` and the launch buttons
    find them there); configuration and table of contents come from ``book/``; warnings are errors, and
    ``--keep-going`` reports all of them before failing. The HTML goes to ``<path_output>/_build/html``.
    """
    root = course_root()
    path_output = root / "book" if path_output is None else Path(path_output)
    script = Path(sys.executable).with_name("jupyter-book")
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: install the course's dev extras (pip install -e '.[dev]')")
    return [str(script), "build", str(root), "--path-output", str(path_output),
            "--config", str(root / "book" / "_config.yml"), "--toc", str(root / "book" / "_toc.yml"),
            "--warningiserror", "--keep-going"]


def build_book(path_output: Path | None = None) -> Path:
    """Render the HTML book with Jupyter Book, executing the notebooks (cached); returns ``index.html``.

    Runs in the repository root with this Python's environment first on ``PATH``, so the notebooks'
    kernels are the course's environment. Raises ``RuntimeError`` when the build fails (a failing cell
    or any Sphinx warning).
    """
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    root = course_root()
    path_output = (root / "book" if path_output is None else Path(path_output)).resolve()
    argv = book_command(path_output)
    print("building the book:", " ".join(argv), flush=True)
    status = subprocess.run(argv, cwd=root, env=env, check=False).returncode
    if status:
        raise RuntimeError(f"jupyter-book build failed (exit status {status}); the cause is printed above")
    return path_output / "_build" / "html" / "index.html"


def vgg19_file() -> Path:
    """Where torch hub keeps the VGG19 ImageNet weights (``$TORCH_HOME/hub/checkpoints/vgg19-....pth``)."""
    import torch
    from torchvision.models import VGG19_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def missing_downloads() -> list[tuple[str, str, Path]]:
    """``(what, url, where)`` for each download of the full course that is not available locally.

    * the VGG19 weights: ``url`` the weights' file, ``where`` :func:`vgg19_file`;
    * the sample images (one entry for all of them) that are neither cached with the manifest's
      SHA-256 nor in an ``NSTLIB_MIRROR`` folder: ``url`` the first one's (on the mirror when
      ``NSTLIB_MIRROR`` is a URL), ``where`` the cache's ``images/`` folder;
    * the pretrained models, unless extracted or their archive is placed by hand: ``where`` the archive.
    """
    from torchvision.models import VGG19_Weights

    from .. import config
    from ..data import samples
    from ..data.pretrained import ARCHIVE_NAME, ARCHIVE_URL, MODELS_FOLDER, PRETRAINED_STYLES, pretrained_dir

    missing = []
    if not vgg19_file().is_file():
        missing.append(("the VGG19 weights", VGG19_Weights.IMAGENET1K_V1.url, vgg19_file()))
    images = config.cache_dir() / "images"
    mirror = config.mirror()
    mirror_url = mirror if mirror and mirror.lower().startswith(("http://", "https://")) else None
    absent = [sample for sample in samples.SAMPLES.values() if not samples.is_available(sample)]
    if absent:
        url = mirror_url.rstrip("/") + "/" + absent[0].file if mirror_url else absent[0].url
        missing.append((f"{len(absent)} sample images", url, images))
    archive = pretrained_dir() / ARCHIVE_NAME
    models = [pretrained_dir() / MODELS_FOLDER / f"{style}.pth" for style in PRETRAINED_STYLES]
    if not all(path.is_file() for path in models) and not archive.is_file():
        missing.append(("the pretrained models' archive", ARCHIVE_URL, archive))
    return missing


def _unreachable(url: str, timeout: float) -> str | None:
    """None when the host of ``url`` answers a HEAD request (any HTTP status), else why not.

    Only the headers are asked for (no redirect is followed); proxies come from the environment
    (``HTTPS_PROXY``), as for the downloads themselves."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # the answer itself shows the host is there

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError as error:
        error.close()
    except urllib.error.URLError as error:
        return str(error.reason)
    except OSError as error:  # timeouts, resets
        return f"{type(error).__name__}: {error}"
    return None


def check_downloads(timeout: float = PROBE_TIMEOUT) -> None:
    """Raise :class:`OfflineError` when the full course needs downloads whose hosts do not answer.

    Quick mode never downloads, and nothing is asked when :func:`missing_downloads` is empty; else one
    HEAD request per host (``timeout`` seconds each). The message names what is missing and where
    it goes, and the three ways out: connect, ``NSTLIB_QUICK=1``, or a mirror / files placed by hand.
    """
    from .. import config

    if config.quick_mode():
        return
    missing = missing_downloads()
    hosts = {urllib.parse.urlsplit(url).netloc: url for _, url, _ in missing}
    failed = {host: reason for host, url in hosts.items() if (reason := _unreachable(url, timeout))}
    if not failed:
        return
    down = "; ".join(f"{host}: {reason}" for host, reason in failed.items())
    needed = ", ".join(f"{what} ({where})" for what, _, where in missing)
    by_hand = "; ".join(f"{url} to {where}" for what, url, where in missing if not what.endswith("sample images"))
    raise OfflineError(
        f"the full course downloads files that are not cached, and the network does not answer ({down}). "
        f"Missing: {needed}. Three ways out: (1) connect to the internet (behind a proxy: set HTTPS_PROXY) and run "
        f"again; (2) NSTLIB_QUICK=1 make course builds the offline smoke-test version (random weights, synthetic "
        f"images); (3) place the files by hand" + (f": {by_hand}" if by_hand else "") + "; the sample images (their "
        f"URLs are in data/images.tsv) go to {config.cache_dir() / 'images'}/<file>, or set {config.ENV_MIRROR} to "
        "a folder or URL that holds them (style/..., content/...). 'nstlib info' shows these paths.")


def build(*, gallery: bool = True, workers: int = 2, path_output: Path | None = None) -> int:
    """Build the whole course: run the gallery batches, then render the HTML book; returns an exit status.

    0. Outside quick mode, :func:`check_downloads`: offline with nothing cached, one
       :class:`OfflineError` (a RuntimeError) says what to do, before anything runs.
    1. Every grid of ``book/grids`` runs with papermill (:func:`run_gallery`, resumable), unless
       ``gallery`` is false; its figure lands in :func:`gallery_output`.
    2. ``jupyter-book build`` (:func:`book_command`) executes every notebook (``execute_notebooks: cache``)
       and renders the book, the gallery included (a missing figure is a note on the page, not an error).

    Prints where the HTML is. Returns 1 when a batch run failed (the book is built anyway), 0 otherwise.
    """
    from ..config import quick_mode

    mode = "QUICK MODE (NSTLIB_QUICK=1): smoke-test scale, offline" if quick_mode() else "full course"
    print(f"building the course: {mode}", flush=True)
    check_downloads()
    failed = run_gallery(workers=workers) if gallery else []
    index = build_book(path_output)
    print(f"\nThe book is ready: {index}" + (" (quick mode: not real results)" if quick_mode() else ""))
    if failed:
        print(f"{len(failed)} gallery run(s) failed: {', '.join(failed)}; their cells stay blank. "
              "Their notebooks are in the runs' folders; fix and run `make course` again (complete runs are kept).",
              file=sys.stderr)
        return 1
    return 0
