"""The package's shape: no import cycles, every console script's ``main`` in ``cli/``, every pipeline exported.

The import graph is read from the source with `ast` (no module is run): an edge for every ``import`` and
``from ... import`` of a package module, at module level or inside a function (a lazy import still ties two
modules together). Importing ``a.b.c`` runs the packages ``a`` and ``a.b`` first, but that is how Python works,
not a dependency of the importer: only the module named (or the package whose attribute is taken) is an edge.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

import ncsn_pipeline

PACKAGE_ROOT = Path(ncsn_pipeline.__file__).parent
REPOSITORY = Path(__file__).resolve().parents[1]


def _modules() -> dict:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ["ncsn_pipeline", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict:
    """``{module: {imported module: line}}`` for every module of the package."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first = last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a made-up graph with a cycle through three modules is found."""
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_lazy_imports_count_as_edges():
    """A function-level import is an edge too: the pipeline's folder loading is one (pipeline -> pipeline_loading),
    and so is the loader's Hub download (pipeline_loading -> hub)."""
    graph = import_graph()
    assert "ncsn_pipeline.pipeline_loading" in graph["ncsn_pipeline.pipeline_ncsn"]
    assert "ncsn_pipeline.hub" in graph["ncsn_pipeline.pipeline_loading"]
    assert "ncsn_pipeline.pipeline_ncsn" not in graph["ncsn_pipeline.hub.export"]  # the export is given the class


def test_low_modules_import_nothing_above_them():
    """The records, the errors and the file helpers sit at the bottom: every layer may import them."""
    graph = import_graph()
    assert set(graph["ncsn_pipeline.errors"]) == set()
    assert set(graph["ncsn_pipeline.folder_records"]) == {"ncsn_pipeline.files"}


def test_the_subpackages_form_layers():
    """Data sits below the applications: ``data/`` imports none of training, evaluation, the demo or the command
    lines, and evaluation imports neither training nor the command lines (lazy imports count)."""
    graph = import_graph()

    def reaches(prefix: str, above: tuple) -> dict:
        return {
            module: sorted(target for target in targets if target.startswith(above))
            for module, targets in graph.items()
            if module.startswith(prefix) and any(target.startswith(above) for target in targets)
        }

    upper = ("ncsn_pipeline.training", "ncsn_pipeline.evaluation", "ncsn_pipeline.demo", "ncsn_pipeline.cli")
    assert reaches("ncsn_pipeline.data", upper) == {}
    assert reaches("ncsn_pipeline.evaluation", ("ncsn_pipeline.training", "ncsn_pipeline.cli")) == {}


def _console_scripts() -> dict:
    text = (REPOSITORY / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"([\w-]+)=(ncsn_pipeline[\w.]*):main"', text))


def test_every_console_script_main_lives_in_cli():
    scripts = _console_scripts()
    assert len(scripts) >= 8, scripts
    outside = {name: module for name, module in scripts.items() if not module.startswith("ncsn_pipeline.cli.")}
    assert outside == {}, f"console scripts whose main is not in ncsn_pipeline/cli/: {outside}"


@pytest.mark.parametrize("name", ["NCSNPipeline", "NCSNInpaintPipeline", "NCSNColorizePipeline"])
def test_every_pipeline_is_importable_from_the_package(name):
    assert name in ncsn_pipeline.__all__ and isinstance(getattr(ncsn_pipeline, name), type)


def test_the_package_docstring_names_every_subpackage():
    subpackages = sorted(path.parent.name for path in PACKAGE_ROOT.glob("*/__init__.py"))
    missing = [name for name in subpackages if f"``{name}``" not in ncsn_pipeline.__doc__]
    assert missing == [], f"subpackages the package docstring does not name: {missing}"


def test_setup_cfg_is_not_a_second_home_for_entry_points():
    """Entry points have one home, setup.py."""
    config = configparser.ConfigParser()
    config.read(REPOSITORY / "setup.cfg")
    assert not config.has_section("options.entry_points")


def test_the_package_exports_lazily_what_it_lists():
    """``ncsn_pipeline`` imports its public names on first use (so a command line's --help needs no PyTorch): the
    lazy table and ``__all__`` are the same names, each one resolves, and importing the package alone loads neither
    torch nor diffusers (checked in a fresh interpreter)."""
    import subprocess
    import sys

    assert sorted(ncsn_pipeline._EXPORTS) == sorted(ncsn_pipeline.__all__)
    assert all(getattr(ncsn_pipeline, name) is not None for name in ncsn_pipeline.__all__)
    check = "import sys, ncsn_pipeline; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
