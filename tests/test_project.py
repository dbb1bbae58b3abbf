"""Project-level promises: dependency files agree, lower bounds only, the README tells the truth."""

import os
import re
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dev dependency there)
    import tomli as tomllib
from pathlib import Path

import nbformat
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_NAMES = {"pytorch": "torch", "pytorch-cpu": "torch", "matplotlib-base": "matplotlib"}  # conda name -> PyPI name


def _split(requirement: str) -> tuple[str, str]:
    """``"name>=1.0; marker  # comment"`` as ``("name", ">=1.0")``: environment markers are pip's alone."""
    requirement = requirement.split("#")[0].split(";")[0]
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _lower_bound(spec: str) -> Version:
    return Version(re.search(r">=([^,]+)", spec).group(1))


def _merged(requirements: list[str]) -> dict[str, str]:
    """name -> spec; a package listed twice (base and dev) gets the higher of its two lower bounds,
    which is what one environment holding both requirements must satisfy."""
    merged: dict[str, str] = {}
    for requirement in requirements:
        name, spec = _split(requirement)
        if name in merged and merged[name] != spec:
            assert re.fullmatch(r">=[^,<]+", merged[name]) and re.fullmatch(r">=[^,<]+", spec), (
                f"{name}: listed twice with {merged[name]} and {spec}; only plain lower bounds can be merged")
            spec = max(merged[name], spec, key=_lower_bound)
        merged[name] = spec
    return merged


def _conda_packages(env: dict) -> dict[str, str]:
    """PyPI name -> spec of a conda environment's packages (python and pip left out); packages that only
    PyPI has sit in its ``pip:`` list and count too (the local install ``-e .`` does not)."""
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and not re.match(r"(python|pip)\b", item):
            name, spec = _split(item)
            conda[CONDA_NAMES.get(name, name)] = spec
        elif isinstance(item, dict):
            for requirement in item.get("pip", []):
                if not requirement.startswith("-"):
                    conda.update([_split(requirement)])
    return conda


def test_environment_yml_matches_pyproject():
    """environment.yml is the local (dev) environment: base + dev, the stricter bound where both name a package."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = _conda_packages(env)
    project = PYPROJECT["project"]
    wanted = _merged(project["dependencies"] + project["optional-dependencies"]["dev"])
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


def test_base_accepts_colabs_ipywidgets_7_and_dev_pairs_jupyterlab_4_with_ipywidgets_8():
    """JupyterLab 4 draws no ipywidgets 7 widget ("@jupyter-widgets/controls ... is not registered"),
    but Colab ships ipywidgets 7.7.1 and the package must install there without replacing it."""
    project = PYPROJECT["project"]
    base = dict(_split(r) for r in project["dependencies"])
    dev = dict(_split(r) for r in project["optional-dependencies"]["dev"])
    assert SpecifierSet(base["ipywidgets"]).contains("7.7.1")
    assert not SpecifierSet(dev["jupyterlab"]).contains("3.6.7"), "the dev environment's JupyterLab is 4"
    assert not SpecifierSet(dev["ipywidgets"]).contains("7.8.5") and SpecifierSet(dev["ipywidgets"]).contains("8.1.5")
    for name in base.keys() & dev.keys():  # dev may tighten a base bound, never loosen it
        assert _lower_bound(dev[name]) >= _lower_bound(base[name]), f"dev loosens {name}: {dev[name]} < {base[name]}"


# --------------------------------------------------------------------------------------
# Binder (repo2docker reads binder/ first)

BINDER = ROOT / "binder"
NOTEBOOK_FRONT_END = ("jupyterlab", "ipykernel", "ipywidgets")
"""What running the notebooks needs besides nstlib's dependencies, with the dev extra's bounds."""
IMPORT_PACKAGES = {"PIL": "pillow", "yaml": "pyyaml", "IPython": "ipykernel", "sklearn": "scikit-learn"}
"""Import name -> package name where they differ (IPython comes with ipykernel)."""


def _notebook_imports() -> set[str]:
    modules = set()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                modules |= set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", cell.source, flags=re.M))
    return modules


def test_binder_environment_is_pyprojects_dependencies_plus_the_notebook_front_end():
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    assert not [item for item in env["dependencies"] if isinstance(item, dict)], (
        "no pip: section in binder/environment.yml: a local install (-e .) there makes repo2docker rebuild the "
        "whole environment on every commit; binder/postBuild installs the package")
    project = PYPROJECT["project"]
    dev = project["optional-dependencies"]["dev"]
    wanted = _merged(project["dependencies"] + [r for r in dev if _split(r)[0] in NOTEBOOK_FRONT_END])
    assert _conda_packages(env) == wanted
    names = [_split(item)[0] for item in env["dependencies"] if isinstance(item, str)]
    assert "pytorch-cpu" in names and "pytorch" not in names, "conda-forge's CPU build: Binder has no GPU"
    assert "matplotlib-base" in names and "matplotlib" not in names, "matplotlib without the Qt GUI backends"
    python = [item for item in env["dependencies"] if isinstance(item, str) and re.match(r"python\b", item)]
    assert len(python) == 1 and re.fullmatch(r"python=3\.\d+", python[0]), "repo2docker reads only python=X.Y"
    assert SpecifierSet(project["requires-python"]).contains(python[0].split("=")[1] + ".0")


def test_binder_has_every_package_the_notebooks_import():
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    available = set(_conda_packages(env))
    stdlib = set(sys.stdlib_module_names)
    for module in sorted(_notebook_imports() - stdlib - {"nstlib", "google"}):  # google: Colab's own, guarded
        package = IMPORT_PACKAGES.get(module, module).lower().replace("_", "-")
        assert package in available, f"a notebook imports {module}: add {package} to binder/environment.yml"


def test_binder_postbuild_installs_the_package_without_dependencies():
    script = BINDER / "postBuild"
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and os.access(script, os.X_OK)
    commands = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[0] == "set -euo pipefail", "a failed install must fail the Binder build"
    installs = [command for command in commands if " install " in command]
    assert installs == ["python -m pip install --no-deps -e ."], "dependencies come from the cached conda layer only"
