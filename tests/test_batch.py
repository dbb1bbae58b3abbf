"""Papermill batches on a 2x2 grid: a failing run, a resumed second invocation, figure and table."""

import json
import os
import time

import pytest
import yaml

from nstlib import cli, load_image
from nstlib.course import batch
from notebook_files import write_notebook

NOTEBOOK_CELLS = [
    ("A = 1\nB = 'x'\nC = 0\nRESULTS_DIR = None", ["parameters"]),
    ("import torch, nstlib\nfrom pathlib import Path", []),
    (
        "if A == 2 and B == 'y' and not (Path(RESULTS_DIR).parent / 'allow').exists():\n"
        "    raise RuntimeError('deliberate failure')",
        [],
    ),
    (
        "image = torch.zeros(1, 3, 8, 12)\nimage[:, 0] = A / 2\nimage[:, 1] = 1.0 if B == 'y' else 0.0\n"
        "nstlib.save_run(RESULTS_DIR, {'total': float(A * 10), 'seconds': 0.5}, {'stylized': image})",
        [],
    ),
]


@pytest.fixture
def grid_file(tmp_path):
    write_notebook(tmp_path / "probe.ipynb", NOTEBOOK_CELLS)
    spec = {
        "notebook": "probe.ipynb",
        "output": "out",
        "grid": {"A": [1, 2], "B": ["x", "y"]},
        "figure": {"rows": "A", "cols": "B", "image": "stylized.png", "title": "probe"},
        "table": ["total", "seconds"],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow  # papermill runs the 2x2 grid, then the failed run again: kernels start 5 times
def test_two_by_two_grid_with_a_failure_then_resume(grid_file, capsys):
    out = grid_file.parent / "out"
    grid = batch.run_batch(grid_file, workers=2, progress=False)
    records = {r.folder.name: json.loads(r.record.read_text()) for r in grid.runs}
    assert sorted(records) == ["A=1__B=x", "A=1__B=y", "A=2__B=x", "A=2__B=y"]
    assert records["A=2__B=y"]["status"] == "failed" and "deliberate failure" in records["A=2__B=y"]["error"]
    assert [records[k]["status"] for k in ("A=1__B=x", "A=1__B=y", "A=2__B=x")] == ["ok"] * 3
    # each run got its own RESULTS_DIR with its image and metrics, and the executed notebook
    image = load_image(out / "A=2__B=x" / "stylized.png")
    assert abs(image[0, 0].mean().item() - 1.0) < 0.01 and image[0, 1].max().item() == 0.0
    assert json.loads((out / "A=1__B=y" / "metrics.json").read_text())["total"] == 10.0
    assert (out / "A=1__B=x" / "probe.ipynb").exists()
    table = (out / "table.csv").read_text().splitlines()
    assert table[0] == "A,B,status,total,seconds"
    assert "2,y,failed,," in table[4]
    assert (out / "figure.png").stat().st_size > 0 and (out / "figure.pdf").read_bytes().startswith(b"%PDF")

    # second invocation: only the failed run executes again
    (out / "allow").touch()
    done_before = {name: os.stat(out / name / "run.json").st_mtime_ns for name in ("A=1__B=x", "A=1__B=y", "A=2__B=x")}
    time.sleep(0.01)
    grid = batch.run_batch(grid_file, workers=1, progress=False)
    assert all(run.is_complete() for run in grid.runs)
    assert {name: os.stat(out / name / "run.json").st_mtime_ns for name in done_before} == done_before
    assert "4/4 runs complete" in capsys.readouterr().out
    assert "2,y,ok,20," in (out / "table.csv").read_text()


def test_changed_parameters_invalidate_a_complete_run(grid_file, tmp_path):
    grid = batch.load_grid(grid_file)
    run = grid.runs[0]
    run.folder.mkdir(parents=True)
    (run.record).write_text(json.dumps({"status": "ok", "key": run.key}))
    assert run.is_complete()
    changed = batch.Run(run.notebook, {**run.parameters, "A": 99}, run.axes, run.folder)
    assert not changed.is_complete()


def test_quick_mode_is_part_of_the_hash(grid_file, monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    real = batch.load_grid(grid_file).runs[0].key
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert batch.load_grid(grid_file).runs[0].key != real


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grid": {"A": [1]}}, "name the notebook"),
        ({"notebook": "probe.ipynb", "grid": {"A": []}}, "non-empty list"),
        ({"notebook": "missing.ipynb", "grid": {"A": [1]}}, "does not exist"),
        ({"notebook": "probe.ipynb", "grid": {"A": [1]}, "figure": {"rows": "A", "cols": "Z"}}, "figure.cols"),
        ({"notebook": "probe.ipynb", "colour": 1}, "unknown keys"),
        ({"notebook": "probe.ipynb", "parameters": {"AA": 1}, "grid": {"A": [1]}}, "parameter 'AA' is not set in the parameters cell of probe.ipynb"),
        ({"notebook": "probe.ipynb", "grid": {"A": [1], "b": ["x"]}}, "parameter 'b' is not set .* \\(they set: A, B, C, RESULTS_DIR\\)"),
        ({"notebook": "plain.ipynb", "grid": {"A": [1]}}, "plain.ipynb: no cell is tagged 'parameters'"),
        ({"notebook": "no_results.ipynb", "grid": {"A": [1]}}, "no_results.ipynb has no RESULTS_DIR"),
    ],
)
def test_bad_grid_files_name_the_problem(grid_file, spec, message):
    write_notebook(grid_file.parent / "plain.ipynb", [("A = 1\nRESULTS_DIR = None", [])])
    write_notebook(grid_file.parent / "no_results.ipynb", [("A = 1", ["parameters"])])
    path = grid_file.parent / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(batch.GridError, match=message):
        batch.load_grid(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("table: 5", r"'table' must be a list of metrics.json keys \(text\), not a number: 5"),
        ("table: [total, 5]", r"table\[1\] must be a metrics.json key \(text\), not a number: 5"),
        ("output: !!binary aGVsbG8=", r"'output' must be a folder path \(text\), not binary data \(!!binary\)"),
        ("output: null", r"'output' must be a folder path \(text\), not nothing \(null\)"),
        ("parameters: {B: !!binary aGk=}", r"parameters.B must be text, a number, true/false, null, or a list "
                                           r"or mapping of those, not binary data \(!!binary\)"),
        ("parameters: {B: 2020-01-01}", r"parameters.B must be text.* not a date .*quote it"),
        ("parameters: {B: [x, !!set {y}]}", r"parameters.B\[1\] must be text.* not a set \(!!set\)"),
        ("parameters: {1: x}", r"parameters: the name 1 must be text \(a parameter name\), not a number"),
        ("parameters: [B, x]", r"'parameters' must be a mapping"),
        ("grid: {A: [1, !!binary aGk=]}", r"grid.A\[1\] must be text.* not binary data"),
        ("grid: {notebook: [5]}", r"grid.notebook\[0\] must be a notebook path \(text\), not a number: 5"),
        ("figure: {rows: [A], cols: B}", r"figure.rows must be text \(a grid axis\), not a list"),
        ("figure: {rows: A, cols: B, title: !!binary aGk=}", r"figure.title must be text, not binary data"),
        ("figure: {rows: A, cols: B, image: 5}", r"figure.image must be text \(a file name\), not a number"),
        ("figure: {kind: plot, x: A, y: total, series: B, logy: 'yes'}", r"figure.logy must be true or false, "
                                                                          r"not text: 'yes'"),
        ("figure: 3", r"'figure' must be a mapping"),
    ],
)
def test_grid_values_of_the_wrong_type_are_refused_before_any_run(grid_file, text, message):
    """Each value is checked against its expected YAML type when the grid file is read: a bad one would
    otherwise crash the batch later (the table, the figure) or reach the notebook mangled."""
    base = {"notebook": "probe.ipynb", "output": "out", "grid": {"A": [1, 2], "B": ["x", "y"]}}
    spec = yaml.safe_load(text)
    path = grid_file.parent / "typed.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in base.items() if k not in spec}) + text + "\n")
    with pytest.raises(batch.GridError, match=message) as info:
        batch.load_grid(path)
    assert str(info.value).startswith(f"{path}: ")
    assert not (grid_file.parent / "out").exists()


def test_a_batch_whose_every_run_failed_ends_with_a_one_line_summary(tmp_path, monkeypatch, capsys):
    """Two runs, both failing (the notebook raises): no figure can be drawn, and the batch ends with
    one summary line and exit code 1 instead of a traceback from the empty image grid."""
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    write_notebook(tmp_path / "broken.ipynb", [("A = 1\nRESULTS_DIR = None", ["parameters"]),
                                               ("raise RuntimeError(f'no download for A={A}')", [])])
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump({"notebook": "broken.ipynb", "output": "out", "grid": {"A": [1, 2]},
                                    "figure": {"rows": "A", "cols": "A"}, "table": ["total"]}))
    assert cli.main(["batch", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    summary = captured.out.strip().splitlines()[-1]
    assert summary.startswith("0/2 runs complete: every run failed (first: A=1: PapermillExecutionError: ")
    assert summary.endswith("RuntimeError: no download for A=1); no figure; the failed notebooks and run.json "
                            f"files are in {tmp_path / 'out'}")
    assert captured.out.count("FAILED A=") == 2  # each failure was reported as it happened
    out = tmp_path / "out"
    assert not (out / "figure.png").exists() and (out / "table.csv").read_text().splitlines() == [
        "A,status,total", "1,failed,", "2,failed,"]
    assert [json.loads((out / f"A={a}" / "run.json").read_text())["status"] for a in (1, 2)] == ["failed"] * 2


def test_command_line_reports_a_missing_grid_file(tmp_path, capsys):
    assert cli.main(["batch", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _write_grid(folder, spec):
    path = folder / "plot_grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _fake_complete_runs(grid, metrics_of):
    """Mark every run complete (run.json with its key) and give it the metrics ``metrics_of(axes)``."""
    for run in grid.runs:
        run.folder.mkdir(parents=True, exist_ok=True)
        (run.folder / "run.json").write_text(json.dumps({"status": "ok", "key": run.key}))
        metrics = metrics_of(run.axes)
        if metrics is not None:
            (run.folder / "metrics.json").write_text(json.dumps(metrics))


def test_quick_mode_keeps_the_first_values_of_each_axis(grid_file, monkeypatch):
    spec = yaml.safe_load(grid_file.read_text())
    spec["grid"] = {"A": [1, 2, 3, 4], "B": ["x", "y"], "C": [7]}
    spec["figure"] = {"rows": "A", "cols": "B"}
    path = _write_grid(grid_file.parent, spec)
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    full = batch.load_grid(path)
    assert full.axes["A"] == [1, 2, 3, 4] and len(full.runs) == 8 and full.cut == {}
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    quick_grid = batch.load_grid(path)
    assert batch.QUICK_AXIS_VALUES == 2
    assert quick_grid.axes == {"A": [1, 2], "B": ["x", "y"], "C": [7]} and quick_grid.cut == {"A": 2}
    assert [r.axes for r in quick_grid.runs] == [{"A": a, "B": b, "C": 7} for a in (1, 2) for b in ("x", "y")]


def test_plot_figure_draws_the_metric_against_the_axis(grid_file, monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    spec = {"notebook": "probe.ipynb", "output": "plot_out", "grid": {"B": ["x", "y"], "A": [4, 1, 2]},
            "figure": {"kind": "plot", "x": "A", "y": "total", "series": "B", "logy": True, "title": "probe plot"}}
    grid = batch.load_grid(_write_grid(grid_file.parent, spec))

    def metrics_of(axes):
        if axes == {"B": "y", "A": 2}:
            return None  # a run without metrics is left out
        if axes == {"B": "y", "A": 4}:
            return {"final_losses": {"total": 0.25}}  # metrics.json's final_losses count too
        return {"total": axes["A"] * (10.0 if axes["B"] == "x" else 100.0)}

    _fake_complete_runs(grid, metrics_of)
    assert batch.plot_data(grid) == {"x": [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0)], "y": [(1.0, 100.0), (4.0, 0.25)]}
    png, pdf = batch.write_figure(grid)
    assert png.name == "figure.png" and load_image(png).shape[-1] > 100 and pdf.read_bytes().startswith(b"%PDF")
    # an incomplete run (no run.json of its key) is left out as well
    (grid.runs[0].folder / "run.json").unlink()
    assert batch.plot_data(grid)["x"] == [(1.0, 10.0), (2.0, 20.0)]


@pytest.mark.parametrize(
    "figure, message",
    [
        ({"kind": "bars", "x": "A", "y": "total"}, "figure.kind"),
        ({"kind": "plot", "x": "Z", "y": "total"}, "figure.x must name"),
        ({"kind": "plot", "x": "B", "y": "total"}, "must be numbers"),
        ({"kind": "plot", "x": "A"}, "figure.y"),
        ({"kind": "plot", "x": "A", "y": "total"}, "every grid axis"),
        ({"kind": "plot", "x": "A", "y": "total", "series": "Z"}, "figure.series"),
    ],
)
def test_bad_plot_figures_name_the_problem(grid_file, figure, message):
    spec = {"notebook": "probe.ipynb", "grid": {"A": [1, 2], "B": ["x", "y"]}, "figure": figure}
    with pytest.raises(batch.GridError, match=message):
        batch.load_grid(_write_grid(grid_file.parent, spec))


def test_table_metrics_top_level_dotted_and_final_losses(grid_file, monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    spec = {"notebook": "probe.ipynb", "output": "table_out", "grid": {"A": [1, 2]},
            "table": ["content", "final_losses.content", "style", "final_losses.missing", "seconds"]}
    grid = batch.load_grid(_write_grid(grid_file.parent, spec))
    _fake_complete_runs(grid, lambda axes: {"content": "tubingen", "seconds": 0.125 * axes["A"],
                                            "final_losses": {"content": 0.5 * axes["A"], "style": 3}})
    csv_path, _ = batch.write_table(grid)
    assert csv_path.read_text().splitlines() == [
        "A,status,content,final_losses.content,style,final_losses.missing,seconds",
        "1,ok,tubingen,0.5,3,,0.125",
        "2,ok,tubingen,1,3,,0.25",
    ]


def test_notebook_parameters_reads_the_assignments_of_the_parameters_cell(tmp_path):
    source = (
        "# a comment = with an equals sign\n"
        "STYLE_WEIGHT = 1e6     # Gatys' weight (with WEIGHTS = None try 1e9)\n"
        "STYLES = [\n    'mosaic',   # first\n    'candy',\n]\n"
        "SIZE: int = 256\n"
        "LO, HI = 0.0, 1.0\n"
        "import math\n"
        "STYLE_WEIGHT = 2e6\n"
    )
    path = write_notebook(tmp_path / "nb.ipynb", [("x = 1", []), (source, ["parameters"])])
    assert batch.notebook_parameters(path) == ["STYLE_WEIGHT", "STYLES", "SIZE", "LO", "HI"]
    write_notebook(tmp_path / "broken.ipynb", [("A = (", ["parameters"])])
    with pytest.raises(batch.GridError, match="broken.ipynb: its parameters cell is not valid Python"):
        batch.notebook_parameters(tmp_path / "broken.ipynb")


def test_each_notebook_of_a_grid_gets_only_the_parameters_it_sets(grid_file, monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    write_notebook(grid_file.parent / "other.ipynb", [("A = 0\nD = 'd'\nRESULTS_DIR = None", ["parameters"])])
    spec = {"output": "mixed", "parameters": {"B": "y", "D": "z"},
            "grid": {"notebook": ["probe.ipynb", "other.ipynb"], "A": [1, 2]}}
    grid = batch.load_grid(_write_grid(grid_file.parent, spec))
    assert sorted((r.notebook.name, r.axes["A"], r.parameters) for r in grid.runs) == [
        ("other.ipynb", 1, {"D": "z", "A": 1}), ("other.ipynb", 2, {"D": "z", "A": 2}),
        ("probe.ipynb", 1, {"B": "y", "A": 1}), ("probe.ipynb", 2, {"B": "y", "A": 2}),
    ]
