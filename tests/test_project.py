"""Project-level promises: dependency files agree, lower bounds only, the README tells the truth."""

import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dev dependency there)
    import tomli as tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def _split(requirement: str) -> tuple[str, str]:
    """``"name>=1.0; marker  # comment"`` as ``("name", ">=1.0")``: environment markers are pip's alone."""
    requirement = requirement.split("#")[0].split(";")[0]
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and not item.startswith(("python", "pip")):
            name, spec = _split(item)
            conda[CONDA_NAMES.get(name, name)] = spec
    project = PYPROJECT["project"]
    wanted = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    assert conda == wanted
    python = next(i for i in env["dependencies"] if isinstance(i, str) and i.startswith("python"))
    assert python.replace("python", "") == project["requires-python"]


def test_dependencies_are_lower_bounds_not_pins():
    project = PYPROJECT["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, spec = _split(requirement)
        assert "==" not in spec and spec.startswith(">="), f"{requirement}: use a lower bound"
        if "<" in spec:
            assert name == "jupyter-book", f"{requirement}: only Jupyter Book is held below 2 (offline HTML, Colab button)"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme.split("## Quick start", 1)[1].split("\n## ", 1)[0], flags=re.S)
    lines = [line.split("#")[0].strip() for block in commands for line in block.strip().splitlines() if line.strip()]
    assert len(lines) == 2, f"the quick start shows exactly two commands, found {lines}"
    assert lines[1] in ci.splitlines()[-1], ".ci/run must call the README's test command and nothing else"


def test_readme_lists_every_notebook_with_a_colab_badge():
    readme = (ROOT / "README.md").read_text()
    slug = PYPROJECT["project"]["urls"]["Repository"].removeprefix("https://github.com/")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
        assert badge in readme, f"README: no Open-in-Colab badge for {path.name}"
