"""Papermill batches on a 2x2 grid: a failing run, a resumed second invocation, figure and table."""

import json
import os
import time


import nbformat
import pytest
import yaml

from nstlib import batch, load_image

NOTEBOOK_CELLS = [
    ("code", "A = 1\nB = 'x'\nRESULTS_DIR = None", ["parameters"]),
    ("code", "import torch, nstlib\nfrom pathlib import Path", []),
    (
        "code",
        "if A == 2 and B == 'y' and not (Path(RESULTS_DIR).parent / 'allow').exists():\n"
        "    raise RuntimeError('deliberate failure')",
        [],
    ),
    (
        "code",
        "image = torch.zeros(1, 3, 8, 12)\nimage[:, 0] = A / 2\nimage[:, 1] = 1.0 if B == 'y' else 0.0\n"
        "nstlib.save_run(RESULTS_DIR, {'total': float(A * 10), 'seconds': 0.5}, {'stylized': image})",
        [],
    ),
]


@pytest.fixture
def grid_file(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    for kind, source, tags in NOTEBOOK_CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    (tmp_path / "probe.ipynb").write_text(nbformat.writes(nb))
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
    ],
)
def test_bad_grid_files_name_the_problem(grid_file, spec, message):
    path = grid_file.parent / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(batch.GridError, match=message):
        batch.load_grid(path)


def test_command_line_reports_a_missing_grid_file(tmp_path, capsys):
    assert batch.main([str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
