"""The package's shape, read from its source with :mod:`ast` (nothing is imported or run).

* the import graph of ``nstlib`` has no cycle: every import counts, at module level and inside
  functions alike (a function-level import only hides a cycle until the function runs), and so does
  each entry of ``nstlib/__init__.py``'s lazy table of exports (``_EXPORTS``, imported on first use);
* no function or method is longer than 100 lines;
* the notebooks use one public API: ``nstlib``'s top-level names and the subpackages
  ``nstlib.data`` and ``nstlib.course``;
* the tests mirror the package: each module has its test module.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nstlib"
TESTS = ROOT / "tests"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_FUNCTION_LINES = 100
DOCUMENTED_SUBPACKAGES = ("nstlib.data", "nstlib.course")


# ---- modules and their imports ------------------------------------------------------------------------------

def module_files() -> dict[str, Path]:
    """``{"nstlib.data.samples": path, "nstlib.data": .../data/__init__.py, ...}`` for every source file."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module named by ``from <node.module> import ...`` written inside ``module``."""
    if node.level == 0:
        return node.module
    package = module if _is_package(module) else module.rpartition(".")[0]
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    if not parts:
        return None  # a relative import above the top-level package: a syntax error at run time
    return ".".join(parts + ([node.module] if node.module else []))


def _known(name: str | None) -> str | None:
    """``name`` when it is a module of nstlib, else None (a module outside nstlib, or a typo)."""
    return name if name in MODULES else None


def lazy_exports(module: str) -> dict[str, tuple[tuple[str, ...], int]]:
    """``{"nstlib.gatys": (("stylize", ...), line), ...}``: the lazy table ``_EXPORTS = {"gatys": (...)}``
    that ``module``'s file assigns at top level (PEP 562: each module is imported when one of its names
    is first used), its keys made absolute; empty when the file has no such table."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        else:
            target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id == "_EXPORTS":
            table = ast.literal_eval(node.value)
            lines = {ast.literal_eval(key): key.lineno for key in node.value.keys}
            return {f"{package}.{relative}": (tuple(names), lines[relative]) for relative, names in table.items()}
    return {}


def imports_of(module: str) -> list[tuple[str, int]]:
    """The nstlib modules that ``module`` imports anywhere in its file, with the line of each import.

    ``import a.b.c`` imports ``a.b.c``; ``from p import n`` imports the submodule ``p.n`` when
    there is one, else ``p`` itself (``n`` is a name defined in ``p``). Relative imports are
    resolved against ``module``'s package. An entry of a lazy table (:func:`lazy_exports`) imports
    its module too. The parent packages' ``__init__`` files that Python runs
    on the way are not counted: a package that re-exports its modules would otherwise be a cycle
    with each of them.
    """
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))
    found = []
    for target, (_, line) in lazy_exports(module).items():
        assert _known(target), f"{MODULES[module]}:{line}: the lazy table names {target!r}, no nstlib module"
        found.append((target, line))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if _known(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            if base is None or not base.split(".")[0] == "nstlib":
                continue
            for alias in node.names:
                target = _known(f"{base}.{alias.name}") or _known(base)
                assert target, f"{MODULES[module]}:{node.lineno}: 'from {'.' * node.level}{node.module or ''} import {alias.name}' names no nstlib module"
                found.append((target, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` over every module of nstlib."""
    graph = {}
    for module in MODULES:
        edges: dict[str, int] = {}
        for target, line in imports_of(module):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search, white/grey/black)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "grey"
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "grey":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "black"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def tangles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` that hold a cycle (Tarjan), each sorted:
    the groups of modules that import one another, directly or through the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, {}):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def test_import_resolution_on_known_lines():
    # the resolver itself, on imports whose targets are known by reading them
    samples = dict(imports_of("nstlib.data.samples"))
    assert {"nstlib.config", "nstlib.fileio", "nstlib.data.synthetic", "nstlib.data.download"} <= set(samples)
    top = {target for target, _ in imports_of("nstlib")}
    assert {"nstlib.checkpoints", "nstlib.data.datasets", "nstlib.widgets"} <= top
    assert "nstlib.cli" not in top
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) is None
    assert tangles({"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"d": 1}, "d": {"c": 1}, "e": {"a": 1}}) == [["a", "b"], ["c", "d"]]
    assert tangles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []


def test_import_graph_has_no_cycle():
    graph = import_graph()
    report = []
    for group in tangles(graph):
        inside = {module: {t: line for t, line in graph[module].items() if t in group} for module in group}
        cycle = find_cycle(inside)
        steps = [f"{MODULES[a].relative_to(ROOT)}:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:])]
        edges = [f"{MODULES[a].relative_to(ROOT)}:{line} -> {b}" for a in group for b, line in sorted(inside[a].items())]
        report.append(f"modules {', '.join(group)} import one another; for example\n    " + "\n    ".join(steps)
                      + "\n  all imports among them:\n    " + "\n    ".join(edges))
    assert not report, "import cycles (a function-level import counts too):\n  " + "\n  ".join(report)


# ---- function length ----------------------------------------------------------------------------------------

def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"path:line name (N lines)"`` for every def / async def (methods and nested ones too) over ``limit``."""
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return offenders


def test_long_functions_are_measured_from_def_to_last_line():
    source = "def f():\n" + "    x = 1\n" * 100 + "\n\nclass C:\n    def g(self):\n        pass\n"
    tree = ast.parse(source)
    sizes = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert sizes == {"f": 101, "g": 2}


def test_no_function_is_longer_than_100_lines():
    offenders = long_functions()
    assert not offenders, "functions over 100 lines (split them):\n  " + "\n  ".join(offenders)


# ---- the notebooks' public API -------------------------------------------------------------------------------

def public_names() -> set[str]:
    """The names ``nstlib/__init__.py`` binds itself (imports, assignments, definitions) or exports
    through its lazy table (:func:`lazy_exports`)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    names = {name for exported, _ in lazy_exports("nstlib").values() for name in exported}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names | {sub.rpartition(".")[2] for sub in DOCUMENTED_SUBPACKAGES}


def _allowed_module(name: str) -> bool:
    return name == "nstlib" or any(name == sub or name.startswith(sub + ".") for sub in DOCUMENTED_SUBPACKAGES)


def _code(source: str) -> str:
    """A cell's Python: IPython magics and shell lines (``%pip``, ``!ls``) blanked, line numbers kept."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def api_violations(source: str, allowed: set[str]) -> list[str]:
    """What a cell's code uses of nstlib beyond ``nstlib.<allowed name>`` and the documented subpackages."""
    tree = ast.parse(_code(source))
    aliases = {"nstlib"}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "nstlib":
                    continue
                if not _allowed_module(alias.name):
                    problems.append(f"line {node.lineno}: import {alias.name}")
                if alias.asname and alias.name == "nstlib":
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nstlib":
            if not _allowed_module(node.module):
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            elif node.module == "nstlib":
                problems += [f"line {node.lineno}: from nstlib import {a.name}" for a in node.names
                             if a.name != "*" and a.name not in allowed]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr not in allowed:
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return problems


def test_api_checker_on_hand_written_cells():
    allowed = {"stylize", "load_image", "data", "course"}
    assert api_violations("import nstlib\nx = nstlib.stylize(nstlib.load_image('a'))", allowed) == []
    assert api_violations("from nstlib.data.samples import standin\nimport nstlib.course.batch", allowed) == []
    assert api_violations("%matplotlib inline\n!ls\nfrom nstlib import stylize", allowed) == []
    assert api_violations("import nstlib.color", allowed) == ["line 1: import nstlib.color"]
    assert api_violations("from nstlib.perceptual import PerceptualLoss", allowed) == ["line 1: from nstlib.perceptual import ..."]
    assert api_violations("from nstlib import color, stylize", allowed) == ["line 1: from nstlib import color"]
    assert api_violations("import nstlib as nst\ny = nst.losses.gram_matrix(x)", allowed) == ["line 2: nst.losses"]
    assert api_violations("nstlib = 1\nnstlib.data.samples.SAMPLES", allowed) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_use_only_the_public_api(path):
    allowed = public_names()
    notebook = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            problems += [f"cell {index}, {p}" for p in api_violations(source, allowed)]
    assert not problems, (f"{path.name} reaches past nstlib's public API (import from nstlib, nstlib.data or "
                          "nstlib.course, or re-export the name in nstlib/__init__.py):\n  " + "\n  ".join(problems))


def test_public_names_are_read_from_the_package():
    import nstlib

    names = public_names()
    assert {"stylize", "PerceptualLoss", "save_run", "data", "course", "__version__"} <= names
    assert "color" not in names and "cli" not in names
    assert all(hasattr(nstlib, name) for name in names - {"course"})


# ---- tests mirror the package ----------------------------------------------------------------------------

def test_every_module_has_its_test_module():
    # tests/test_<module>.py for nstlib/<module>.py and nstlib/<sub>/<module>.py (course.book: test_book.py)
    missing = []
    for module, path in MODULES.items():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        name = module.rpartition(".")[2]
        if not (TESTS / f"test_{name}.py").exists():
            missing.append(f"{path.relative_to(ROOT)} -> tests/test_{name}.py")
    assert not missing, "modules without a test module:\n  " + "\n  ".join(missing)


def test_lazy_table_of_exports_counts_as_imports():
    # the table read from the source (ast) is the one the package uses at run time, and its entries are
    # edges of the import graph: a module that imported the package would close a cycle through it
    import nstlib

    table = lazy_exports("nstlib")
    assert table == {f"nstlib.{module}": (tuple(names), table[f"nstlib.{module}"][1])
                     for module, names in nstlib._EXPORTS.items()}
    assert {"nstlib.gatys", "nstlib.data.samples", "nstlib.widgets"} <= set(table)
    graph = import_graph()
    assert set(table) <= set(graph["nstlib"])
    assert find_cycle(graph) is None
    graph["nstlib.losses"] = {**graph["nstlib.losses"], "nstlib": 1}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and {"nstlib", "nstlib.losses"} <= set(cycle)
    assert lazy_exports("nstlib.gatys") == {}


def test_no_exported_name_is_also_a_module_name():
    """``nstlib.x`` must mean one thing: importing a submodule binds its name on the package, so an
    exported function of the same name would be replaced by the module (``nstlib.adain`` once was)."""
    import nstlib

    modules = {path.stem for path in PACKAGE.glob("*.py")} | {path.name for path in PACKAGE.iterdir() if path.is_dir()}
    assert not sorted(set(nstlib.__all__) & modules)
