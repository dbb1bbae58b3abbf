"""Every notebook follows the course's anatomy; outputs are stripped except nbval-checked cells.

The notebooks themselves are executed by nbval in quick mode (second half of ``make test``).
"""

import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dev dependency there)
    import tomli as tomllib
from pathlib import Path

import nbformat
import pytest

from nstlib.course.book import CHECK_MARK, is_checked, notebook_paths, strip_outputs

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebook_paths(ROOT / "notebooks")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REPOSITORY = PROJECT["urls"]["Repository"]
SLUG = REPOSITORY.removeprefix("https://github.com/")
VERSION = PROJECT["version"]


def test_there_are_notebooks_and_they_are_numbered_in_order():
    assert NOTEBOOKS, "notebooks/ holds no NN_name.ipynb files"
    names = [p.name for p in (ROOT / "notebooks").glob("*.ipynb")]
    assert sorted(names) == [p.name for p in NOTEBOOKS], "every notebook must be named NN_snake_case.ipynb"
    for i, path in enumerate(NOTEBOOKS, start=1):
        assert re.fullmatch(r"\d\d_[a-z0-9]+(_[a-z0-9]+)*\.ipynb", path.name), path.name
        assert int(path.name[:2]) == i, f"{path.name}: notebooks must be numbered 01, 02, ... without gaps"


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_valid_nbformat_and_python_kernel(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3", path.name


def test_has_a_parameters_cell(notebook):
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: exactly one code cell tagged 'parameters'"
    assert "RESULTS_DIR" in tagged[0].source, f"{path.name}: the parameters cell must hold RESULTS_DIR"


def test_papermill_sees_every_parameter(notebook):
    """papermill's own reader of the parameters cell (it gives up on a line holding two '=', even
    inside a comment) finds every name an AST parse finds, so `papermill --help-notebook` lists
    them all and a batch never warns "unknown parameter" for a real one."""
    from papermill.translators import PythonTranslator

    from nstlib.course.batch import notebook_parameters

    path, nb = notebook
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert [p.name for p in PythonTranslator.inspect(cell)] == notebook_parameters(path), path.name


def test_outputs_stored_only_for_nbval_checked_cells(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_checked(cell):
            assert cell.outputs, f"{path.name} cell {i}: marked {CHECK_MARK} but has no stored output"
        else:
            assert not cell.outputs and cell.execution_count is None, f"{path.name} cell {i}: outputs not stripped"
    stripped = nbformat.from_dict(nb)
    strip_outputs(stripped)
    assert stripped == nb, f"{path.name}: run `python -m nstlib.course refresh {path.name}`"


def test_anatomy_title_goals_setup_exercises_summary_references(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{path.name}: starts with an H1 title"
    lowered = first.source.lower()
    for needed in ("learning goals", "time", "hardware"):
        assert needed in lowered, f"{path.name}: the first cell states {needed!r}"
    badge = f"https://colab.research.google.com/github/{SLUG}/blob/main/notebooks/{path.name}"
    assert badge in first.source, f"{path.name}: Open-in-Colab badge must point at {badge}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f"git+{REPOSITORY}" in code, f"{path.name}: the setup cell installs nstlib from {REPOSITORY}"
    assert "nstlib.get_device(verbose=True)" in code
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert len(re.findall(r"^#+ Exercise", markdown, flags=re.M)) >= 2, f"{path.name}: at least two exercises"
    assert code.count("check_exercise(") >= 2, f"{path.name}: each exercise has a self-check cell"
    assert re.search(r"^## Summary", markdown, flags=re.M), f"{path.name}: a Summary section"
    assert re.search(r"^## References", markdown, flags=re.M), f"{path.name}: a References section"


def test_plot_cells_do_not_end_with_a_semicolon(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.strip():
            assert not cell.source.rstrip().endswith(";"), f"{path.name} cell {i} ends with ';'"


def test_no_quick_mode_switch_inside_notebooks(notebook):
    path, nb = notebook
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert "NSTLIB_QUICK" not in cell.source, f"{path.name}: quick mode lives in nstlib, not in cells"


def test_colab_gets_a_gpu_runtime(notebook):
    path, nb = notebook
    assert nb.metadata.get("accelerator") == "GPU", f"{path.name}: set metadata accelerator: GPU for Colab"


@pytest.mark.parametrize("pip_succeeds", [True, False], ids=["pip ok", "pip fails"])
def test_setup_cell_installs_this_release_and_shows_pips_errors(notebook, pip_succeeds, monkeypatch, capsys):
    """Run the setup cell as on a fresh Colab runtime (nstlib not importable) with pip faked: it installs the
    tag v<pyproject version> without --quiet, and on failure prints pip's messages and stops."""
    import importlib.util
    import subprocess
    import sys

    path, nb = notebook
    source = next(c for c in nb.cells if c.cell_type == "code").source
    assert re.search(rf'^NSTLIB_VERSION = "{re.escape(VERSION)}"$', source, flags=re.M), (
        f"{path.name}: the setup cell's NSTLIB_VERSION must be pyproject's version {VERSION}")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nstlib" else find_spec(name, *a))
    calls = []

    def pip(args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0 if pip_succeeds else 1, stdout="Collecting nstlib (pip's log)\n",
                                           stderr="" if pip_succeeds else "ERROR: pip's own error message\n")

    monkeypatch.setattr(subprocess, "run", pip)
    if pip_succeeds:
        exec(compile(source, f"{path.name} setup cell", "exec"), {})
    else:
        with pytest.raises(RuntimeError, match=f"pip could not install nstlib {re.escape(VERSION)}"):
            exec(compile(source, f"{path.name} setup cell", "exec"), {})
    out = capsys.readouterr().out
    (args, kwargs), = calls
    assert args == [sys.executable, "-m", "pip", "install", f"git+{REPOSITORY}@v{VERSION}"], f"{path.name}: {args}"
    assert kwargs.get("capture_output") and kwargs.get("text"), f"{path.name}: pip's output is captured, to be shown"
    assert ("ERROR: pip's own error message" in out and "Collecting nstlib (pip's log)" in out) != pip_succeeds
    if pip_succeeds:
        assert "Note: this notebook was written for" not in out, "nstlib.__version__ must equal pyproject's version"
