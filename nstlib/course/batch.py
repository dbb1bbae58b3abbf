"""Batch runs with papermill: one notebook over a grid of parameters, then a comparison figure.

``nstlib batch GRID.yaml [--workers N] [--force]`` reads a grid file such as::

    notebook: ../notebooks/03_gatys_style_transfer.ipynb   # relative to the grid file
    output: ../results/batch/style_weight_sweep            # relative to the grid file
    parameters:                 # the same for every run
      CONTENT: tubingen
      STEPS: 300
    grid:                       # every combination of these (rows first)
      STYLE: [starry_night, mosaic]
      STYLE_WEIGHT: [1.0e+5, 1.0e+6, 1.0e+7]
    figure:                     # optional: the labelled comparison grid
      rows: STYLE
      cols: STYLE_WEIGHT
      image: stylized.png       # a file each run leaves in its RESULTS_DIR
      title: Style weight sweep
    table: [total, content, style, seconds]   # metrics.json keys for the table (see below)

A grid axis named ``notebook`` runs different notebooks (paths) under the same parameters, e.g.
Gatys (03) against Johnson (05) per style. Each notebook then receives only the parameters its
``parameters`` cell assigns (see :func:`notebook_parameters`); a parameter that no notebook of the
grid assigns is a :class:`GridError` (usually a typo), never silently ignored.

Instead of an image grid, ``figure`` can draw a metric against a numeric axis (``kind: plot``)::

    figure:
      kind: plot
      x: SIZE                   # a grid axis with numeric values
      y: seconds                # a metrics.json key (or a key of its "final_losses")
      series: notebook          # optional: one line per value of this axis
      logy: true                # optional: logarithmic y axis
      xlabel: longer side (px)  # optional axis labels (default: the names of x and y)
      ylabel: seconds per image
      title: Runtime against image size

Every grid axis must then be ``x`` or ``series``; runs without the metric are left out.

A metric name (``table`` entries, a plot's ``y``) is a key of ``metrics.json``; a dotted name walks
nested values (``final_losses.total``); a plain name missing at the top level is looked up in
``final_losses``, where the notebooks keep their last loss values.

In quick mode (``NSTLIB_QUICK=1``) every grid axis keeps only its first :data:`QUICK_AXIS_VALUES`
values, so a quick batch is a smoke test of the whole pipeline in a fraction of the time; the
figure's title says QUICK MODE.

Every run gets its own folder ``<output>/<axis>=<value>__.../`` holding the executed notebook, the
images and ``metrics.json`` the notebook wrote there (its ``RESULTS_DIR`` parameter), and a
``run.json`` with the parameters, the status and a content hash of notebook + parameters (+ quick
mode). A failed run is reported and does not stop the others; invoking the batch again skips every
run already complete with the same hash, so a crashed batch resumes where it stopped. At the end
``figure.png``/``figure.pdf`` (image grid with row and column labels) and ``table.csv``/
``table.md`` (parameters and metrics per run) are written into the output folder.

``--scheduler ADDRESS`` (``local:N`` for a local Dask cluster of N workers) runs each notebook as a
task on a ``dask.distributed`` cluster instead of the local process pool, with the same folders,
records, resumption and figure; the files come back to this machine (:mod:`nstlib.course.cluster`).
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import config
from ..fileio import atomic_write_json, atomic_write_text

NOTEBOOK_AXIS = "notebook"

QUICK_AXIS_VALUES = 2
"""In quick mode each grid axis keeps only its first this many values."""

FIGURE_KINDS = ("images", "plot")


class GridError(ValueError):
    """The grid file is malformed; the message names the file, the key and the fix."""


@dataclass
class Run:
    """One notebook execution of a batch."""

    notebook: Path
    parameters: dict[str, Any]
    axes: dict[str, Any]
    folder: Path
    key: str = field(default="")

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.notebook.read_bytes())
        digest.update(json.dumps({"parameters": self.parameters, "quick": config.quick_mode()}, sort_keys=True, default=str).encode())
        self.key = digest.hexdigest()

    @property
    def record(self) -> Path:
        return self.folder / "run.json"

    def is_complete(self) -> bool:
        """True when a previous invocation finished this run with the same notebook and parameters."""
        try:
            record = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        return record.get("status") == "ok" and record.get("key") == self.key


@dataclass
class Grid:
    """A parsed grid file."""

    path: Path
    output: Path
    runs: list[Run]
    axes: dict[str, list]
    figure: dict[str, Any] | None
    table: list[str]
    cut: dict[str, int] = field(default_factory=dict)
    """Axis -> number of values quick mode dropped (empty outside quick mode)."""


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, Path)) and str(value).endswith(".ipynb"):
        return Path(value).stem
    return str(value)


def _folder_name(axes: dict[str, Any]) -> str:
    text = "__".join(f"{k}={_label(v)}" for k, v in axes.items()) or "run"
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names the cell tagged ``parameters`` assigns, in order (what papermill may override).

    Read with :mod:`ast`, so comments and multi-line values do not confuse it. Raises
    :class:`GridError` when the file is not a notebook, has no such cell or the cell is not Python.
    """
    notebook = Path(notebook)
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GridError(f"{notebook}: not a readable notebook ({error})") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            try:
                tree = ast.parse(source)
            except SyntaxError as error:
                raise GridError(f"{notebook}: its parameters cell is not valid Python ({error})") from None
            names: list[str] = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name) and name.id not in names:
                            names.append(name.id)
            return names
    raise GridError(f"{notebook}: no cell is tagged 'parameters'; tag the cell that sets the notebook's knobs "
                    "(Jupyter: View > Cell toolbar > Tags) so papermill can override them")


def load_grid(path: str | Path, output: str | Path | None = None) -> Grid:
    """Read and check a grid file; ``output`` overrides its ``output`` folder."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise GridError(f"{path}: expected a mapping with notebook, output, parameters, grid")
    unknown = set(spec) - {"notebook", "output", "parameters", "grid", "figure", "table"}
    if unknown:
        raise GridError(f"{path}: unknown keys {sorted(unknown)}; allowed: notebook, output, parameters, grid, figure, table")
    _check_types(path, spec)
    base = path.parent
    axes = spec.get("grid") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise GridError(f"{path}: 'grid' must map each parameter to a non-empty list of values")
    if NOTEBOOK_AXIS not in axes and "notebook" not in spec:
        raise GridError(f"{path}: name the notebook to run ('notebook: ../notebooks/03_gatys_style_transfer.ipynb')")
    cut = {}
    if config.quick_mode():
        cut = {k: len(v) - QUICK_AXIS_VALUES for k, v in axes.items() if len(v) > QUICK_AXIS_VALUES}
        axes = {k: v[:QUICK_AXIS_VALUES] for k, v in axes.items()}
    fixed = spec.get("parameters") or {}
    if not isinstance(fixed, dict):
        raise GridError(f"{path}: 'parameters' must be a mapping of parameter names to values")
    out = Path(output) if output is not None else base / spec.get("output", f"../results/batch/{path.stem}")
    declared = {}  # notebook path -> the names its parameters cell assigns
    for name in axes.get(NOTEBOOK_AXIS, [spec.get("notebook")]):
        notebook = base / str(name)
        if not notebook.is_file():
            raise GridError(f"{path}: notebook {notebook} does not exist")
        declared[notebook] = notebook_parameters(notebook)
        if "RESULTS_DIR" not in declared[notebook]:
            raise GridError(f"{path}: {notebook} has no RESULTS_DIR in its parameters cell; the batch sets it to each "
                            "run's folder, so add 'RESULTS_DIR = None' there and write the outputs into it")
    known = set().union(*declared.values())
    for name in [*fixed, *(k for k in axes if k != NOTEBOOK_AXIS)]:
        if name not in known:
            raise GridError(f"{path}: parameter {name!r} is not set in the parameters cell of "
                            f"{' or '.join(n.name for n in declared)}; check its spelling (they set: {', '.join(sorted(known))})")
    runs = []
    for combination in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combination))
        notebook = base / str(chosen.get(NOTEBOOK_AXIS, spec.get("notebook")))
        parameters = {k: v for k, v in {**fixed, **chosen}.items() if k != NOTEBOOK_AXIS and k in declared[notebook]}
        runs.append(Run(notebook.resolve(), parameters, chosen, out / _folder_name(chosen)))
    figure = spec.get("figure")
    if figure is not None:
        _check_figure(path, figure, axes)
    table = spec.get("table") or []
    return Grid(path, out, runs, axes, figure, list(table), cut)


_VALUE = "text, a number, true/false, null, or a list or mapping of those"
"""What a parameter value may be: what papermill writes into a notebook and run.json records as JSON."""

_FIGURE_TEXT = {"kind": "text (images or plot)", "rows": "text (a grid axis)", "cols": "text (a grid axis)",
                "x": "text (a grid axis)", "series": "text (a grid axis)", "y": "text (a metrics.json key)",
                "image": "text (a file name)", "title": "text", "xlabel": "text", "ylabel": "text"}


def _kind(value: Any) -> str:
    """What ``value`` is, in YAML's words, for error messages (``"binary data (!!binary)"``, ``"a number: 5"``)."""
    import datetime

    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"true/false: {value}"
    if isinstance(value, (int, float)):
        return f"a number: {value!r}"
    if isinstance(value, str):
        return f"text: {value[:40]!r}"
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value}): quote it ('{value}') to pass text"
    if isinstance(value, (set, frozenset)):
        return "a set (!!set)"
    return {list: "a list", dict: "a mapping"}.get(type(value), f"a {type(value).__name__}")


def _bad_value(value: Any, where: str) -> tuple[str, str, Any] | None:
    """``(where, expected, part)`` for the first part of ``value`` that is not a plain parameter value
    (:data:`_VALUE`; ``where`` extended to name it, e.g. ``parameters.STYLES[1]``), or None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, list):
        return next(filter(None, (_bad_value(item, f"{where}[{i}]") for i, item in enumerate(value))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            found = ((f"{where}: the key {key!r}", "text", key) if not isinstance(key, str)
                     else _bad_value(item, f"{where}.{key}"))
            if found:
                return found
        return None
    return where, _VALUE, value


def _check_types(path: Path, spec: dict) -> None:
    """GridError naming the key and the expected type for any value of the wrong YAML type (a number
    where a name belongs, ``!!binary``, a date, ...), before anything runs."""
    def fail(where: str, expected: str, value: Any):
        return GridError(f"{path}: {where} must be {expected}, not {_kind(value)}")

    for key, expected in (("notebook", "a notebook path (text)"), ("output", "a folder path (text)")):
        if key in spec and not isinstance(spec[key], str):
            raise fail(f"'{key}'", expected, spec[key])
    for section in ("parameters", "grid"):
        values = spec.get(section)
        if not isinstance(values, dict):
            continue  # absent, or the mapping checks of load_grid explain it
        for name, value in values.items():
            if not isinstance(name, str):
                raise fail(f"{section}: the name {name!r}", "text (a parameter name)", name)
            items = list(enumerate(value)) if section == "grid" and isinstance(value, list) else [(None, value)]
            for i, item in items:
                where = f"{section}.{name}" + ("" if i is None else f"[{i}]")
                if section == "grid" and name == NOTEBOOK_AXIS and not isinstance(item, str):
                    raise fail(where, "a notebook path (text)", item)
                found = _bad_value(item, where)
                if found:
                    raise fail(*found)
    _check_figure_and_table_types(spec, fail)


def _check_figure_and_table_types(spec: dict, fail) -> None:
    """The types of the figure's settings and of the table's entries (see :func:`_check_types`)."""
    figure = spec.get("figure")
    if isinstance(figure, dict):
        for key, expected in _FIGURE_TEXT.items():
            if figure.get(key) is not None and not isinstance(figure[key], str):
                raise fail(f"figure.{key}", expected, figure[key])
        if "logy" in figure and not isinstance(figure["logy"], bool):
            raise fail("figure.logy", "true or false", figure["logy"])
    table = spec.get("table")
    if table is not None and not isinstance(table, list):
        raise fail("'table'", "a list of metrics.json keys (text)", table)
    for i, key in enumerate(table or []):
        if not isinstance(key, str):
            raise fail(f"table[{i}]", "a metrics.json key (text)", key)


def _check_figure(path: Path, figure: Any, axes: dict[str, list]) -> None:
    if not isinstance(figure, dict):
        raise GridError(f"{path}: 'figure' must be a mapping (rows/cols for images, or kind: plot with x and y)")
    kind = figure.get("kind", "images")
    if kind not in FIGURE_KINDS:
        raise GridError(f"{path}: figure.kind {kind!r} is not one of {', '.join(FIGURE_KINDS)}")
    if kind == "images":
        for key in ("rows", "cols"):
            if figure.get(key) not in axes:
                raise GridError(f"{path}: figure.{key} must name a grid axis ({sorted(axes)})")
        return
    if figure.get("x") not in axes:
        raise GridError(f"{path}: figure.x must name a grid axis ({sorted(axes)})")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axes[figure["x"]]):
        raise GridError(f"{path}: figure.x: the values of axis {figure['x']} must be numbers to plot against")
    if not isinstance(figure.get("y"), str):
        raise GridError(f"{path}: figure.y must name a metrics.json key, e.g. 'y: seconds'")
    series = figure.get("series")
    if series is not None and series not in axes:
        raise GridError(f"{path}: figure.series must name a grid axis ({sorted(axes)}) or be left out")
    extra = set(axes) - {figure["x"], series}
    if extra:
        raise GridError(f"{path}: a plot needs every grid axis to be figure.x or figure.series; also set "
                        f"series to one of {sorted(extra)} or remove the other axes")


def execute_run(notebook: str, folder: str, parameters: dict[str, Any], key: str, axes: dict[str, Any]) -> dict[str, Any]:
    """Execute one run with papermill (in a worker process); returns its record (never raises)."""
    import time

    import papermill

    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    record = {"notebook": notebook, "parameters": parameters, "axes": axes, "key": key, "quick": config.quick_mode()}
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            notebook,
            str(folder_path / Path(notebook).name),
            parameters={**parameters, "RESULTS_DIR": str(folder_path.resolve())},
            kernel_name="python3",
            cwd=str(Path(notebook).parent),
            progress_bar=False,
        )
        record["status"] = "ok"
    except Exception as error:  # a failing run is recorded and reported, never fatal to the batch
        message = str(error).strip().splitlines()
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: " + (" ".join(message[-3:]) if message else "")
    record["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write_json(folder_path / "run.json", record)
    return record


def run_grid(grid: Grid, *, workers: int = 1, force: bool = False, progress: bool = True,
             scheduler: Any = None) -> list[dict[str, Any]]:
    """Execute every incomplete run (``workers`` in parallel); returns all runs' records in grid order.

    With ``scheduler`` (``"local:N"``, a Dask scheduler address or file, a cluster or a client) the
    runs are tasks on that Dask cluster instead (:mod:`nstlib.course.cluster`), and ``workers`` must
    stay 1: the cluster's workers are the parallelism.
    """
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if scheduler is not None and workers != 1:
        raise ValueError(f"--workers {workers} and --scheduler exclude each other: on a cluster its workers run "
                         "the runs in parallel (local:N starts N of them)")
    grid.output.mkdir(parents=True, exist_ok=True)
    todo = [run for run in grid.runs if force or not run.is_complete()]
    skipped = len(grid.runs) - len(todo)
    bar = config.progress_bar(total=len(grid.runs), initial=skipped, desc=f"batch {grid.path.stem}", unit="run", disable=not progress)
    if skipped:
        bar.write(f"{skipped} run(s) already complete: skipped")
    arguments = [(str(r.notebook), str(r.folder), r.parameters, r.key, r.axes) for r in todo]
    if scheduler is not None and todo:
        from .cluster import run_on_cluster

        for record in run_on_cluster(todo, scheduler, execute_run):
            _report(bar, record)
    elif workers == 1 or len(todo) <= 1:
        for args in arguments:
            _report(bar, execute_run(*args))
    else:
        # spawn, not fork: forking a process that holds torch threads can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(execute_run, *args) for args in arguments]):
                _report(bar, future.result())
    bar.close()
    return [json.loads(run.record.read_text()) if run.record.exists() else {"status": "missing"} for run in grid.runs]


def _report(bar, record: dict[str, Any]) -> None:
    bar.update(1)
    if record["status"] != "ok":
        bar.write(f"FAILED {_folder_name(record['axes'])}: {record.get('error', '')}")


def _metrics(run: Run) -> dict[str, Any]:
    try:
        return json.loads((run.folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _metric(metrics: dict[str, Any], key: str) -> Any:
    """One value of a run's ``metrics.json``, or ``None`` when it has none.

    ``metrics[key]`` if present; a dotted key walks nested mappings (``final_losses.total`` is
    ``metrics["final_losses"]["total"]``); otherwise ``metrics["final_losses"][key]``.
    """
    if key in metrics:
        return metrics[key]
    if "." in key:
        value: Any = metrics
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value
    losses = metrics.get("final_losses")
    return losses.get(key) if isinstance(losses, dict) else None


def write_table(grid: Grid) -> tuple[Path, Path]:
    """``table.csv`` and ``table.md``: one row per run, its grid values, status and chosen metrics."""
    header = [*grid.axes, "status", *grid.table]
    rows = []
    for run in grid.runs:
        record = json.loads(run.record.read_text()) if run.record.exists() else {"status": "missing"}
        metrics = _metrics(run)
        values = {**{k: _label(v) for k, v in run.axes.items()}, "status": record["status"]}
        for key in grid.table:
            value = _metric(metrics, key)
            values[key] = f"{value:.4g}" if isinstance(value, float) else ("" if value is None else value)
        rows.append([values[h] for h in header])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    csv_path = atomic_write_text(grid.output / "table.csv", buffer.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    md_path = atomic_write_text(grid.output / "table.md", "\n".join(lines) + "\n")
    return csv_path, md_path


def plot_data(grid: Grid) -> dict[str, list[tuple[float, float]]]:
    """The points of a ``kind: plot`` figure: series label -> ``[(x, y), ...]`` sorted by x.

    ``x`` is the run's value of axis ``figure.x``; ``y`` its metric ``figure.y`` (see :func:`_metric`).
    Runs that are not complete or lack a numeric metric are left out. Without ``series`` there is one
    series, labelled with the metric's name.
    """
    spec = grid.figure or {}
    if spec.get("kind", "images") != "plot":
        raise ValueError(f"{grid.path}: the figure is not a plot (figure.kind: plot)")
    series = spec.get("series")
    data: dict[str, list[tuple[float, float]]] = {}
    for value in grid.axes[series] if series else [None]:
        data[spec["y"] if series is None else _label(value)] = []
    for run in grid.runs:
        y = _metric(_metrics(run), spec["y"]) if run.is_complete() else None
        if isinstance(y, (int, float)) and not isinstance(y, bool):
            label = spec["y"] if series is None else _label(run.axes[series])
            data[label].append((float(run.axes[spec["x"]]), float(y)))
    return {label: sorted(points) for label, points in data.items()}


def _plot_figure(grid: Grid, title: str):
    from matplotlib.figure import Figure

    spec = grid.figure
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, points in plot_data(grid).items():
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, marker="o", label=label)
    axes.set_xlabel(spec.get("xlabel", spec["x"]))
    axes.set_ylabel(spec.get("ylabel", spec["y"]))
    if spec.get("logy"):
        axes.set_yscale("log")
    if spec.get("series"):
        axes.legend(title=spec["series"])
    axes.grid(True, alpha=0.3)
    axes.set_title(title)
    return figure


def write_figure(grid: Grid) -> list[Path]:
    """The figure (``figure.png`` and ``figure.pdf``): a labelled image grid where failed runs stay blank,
    or, for ``kind: plot``, the metric against the x axis (:func:`plot_data`). Returns the files written:
    none without a ``figure`` in the grid, or when no run left an image (or a point) to draw."""
    from ..images import ImageError, load_image
    from ..plotting import image_grid, save_figure

    spec = grid.figure
    if not spec:
        return []
    title = spec.get("title", grid.path.stem)
    if config.quick_mode():
        title += " (QUICK MODE: not a real result)"
    if spec.get("kind", "images") == "plot":
        if not any(plot_data(grid).values()):
            return []
        figure = _plot_figure(grid, title)
        return [save_figure(figure, grid.output / f"figure.{suffix}") for suffix in ("png", "pdf")]
    rows, cols = grid.axes[spec["rows"]], grid.axes[spec["cols"]]
    cells: list[list] = [[None] * len(cols) for _ in rows]
    for run in grid.runs:
        image_file = run.folder / spec.get("image", "stylized.png")
        if image_file.exists():
            try:
                image = load_image(image_file)
            except ImageError:
                continue
            cells[rows.index(run.axes[spec["rows"]])][cols.index(run.axes[spec["cols"]])] = image
    if all(cell is None for row in cells for cell in row):
        return []
    figure = image_grid(
        cells,
        row_labels=[f"{spec['rows']}={_label(v)}" for v in rows],
        col_labels=[f"{spec['cols']}={_label(v)}" for v in cols],
        title=title,
    )
    return [save_figure(figure, grid.output / f"figure.{suffix}") for suffix in ("png", "pdf")]


def run_batch(path: str | Path, *, output: str | Path | None = None, workers: int = 1, force: bool = False,
              progress: bool = True, scheduler: Any = None) -> Grid:
    """Load ``path``, execute its runs (on a Dask cluster with ``scheduler``: see :func:`run_grid`), write
    the figure and the table; returns the grid."""
    grid = load_grid(path, output)
    if grid.cut:
        print(f"quick mode: {grid.path.name}: each grid axis keeps its first {QUICK_AXIS_VALUES} values "
              f"(dropped: {', '.join(f'{k} {n}' for k, n in grid.cut.items())})")
    records = run_grid(grid, workers=workers, force=force, progress=progress, scheduler=scheduler)
    write_table(grid)
    drawn = write_figure(grid)
    print(_summary(grid, records, drawn))
    return grid


def _summary(grid: Grid, records: list[dict[str, Any]], drawn: list[Path]) -> str:
    """The batch's last line: runs complete, and where the results are; when every run failed, the
    first failure instead of a figure."""
    failed = [(run, record) for run, record in zip(grid.runs, records) if record["status"] != "ok"]
    if records and len(failed) == len(records):
        run, record = failed[0]
        return (f"0/{len(records)} runs complete: every run failed (first: {run.folder.name}: "
                f"{record.get('error') or record['status']}); no figure; the failed notebooks and run.json "
                f"files are in {grid.output}")
    note = "" if drawn or not grid.figure else " (no figure: no run left anything to draw)"
    return f"{len(records) - len(failed)}/{len(records)} runs complete; results in {grid.output}{note}"


def run_arguments(args: argparse.Namespace) -> int:
    """Run every grid named in ``args`` (``grids``, ``output``, ``workers``, ``force``, ``scheduler``:
    ``nstlib batch``'s options).

    Returns 0 when every run is complete, 1 when a run failed; a bad grid file or option raises
    :class:`GridError`.
    """
    if args.output and len(args.grids) > 1:
        raise GridError("--output needs a single grid file")
    status = 0
    for path in args.grids:
        grid = run_batch(path, output=args.output, workers=args.workers, force=args.force,
                         scheduler=getattr(args, "scheduler", None))
        if not all(r.is_complete() for r in grid.runs):
            status = 1
    return status
