"""The package's import graph (lazy imports inside functions included): no loops, and imports flow one way.

jobs -> cli -> pipeline -> stages, training and inference -> modality and sources -> media, models and cores
-> commit, storage and config. A module may import its own layer or lower ones, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

ROOT = REPO / "lib" / "deepbatch"

# Lowest first. A module not named here by itself takes its package's layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version", "config", "storage", "commit", "manifests", "tables", "logs", "progress", "session", "quality",
     "profiling", "schemas"),
    ("media", "models", "cores", "report"),
    ("modality", "sources", "catalog", "declared"),
    ("stages", "train", "infer", "datasets", "demo", "check"),
    ("pipeline", "status"),
    ("cli",),
)


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        name = ".".join(("deepbatch", *f.relative_to(ROOT).with_suffix("").parts))
        out[name.removesuffix(".__init__")] = f
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The deepbatch modules ``module`` imports, at the top or inside functions."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            names = [mod, *(f"{mod}.{a.name}" for a in node.names)]
        for name in names:
            while name and name not in known and name != "deepbatch.schemas" and not name.startswith("deepbatch.schemas."):
                name = name.rpartition(".")[0]
            if name.startswith("deepbatch.") and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in tests/unit/test_layers.py")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_loops() -> None:
    assert _cycles(_graph()) == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in _graph().items() for t in targets if layer_of(t) > layer_of(m))
    assert upward == []


def test_the_graph_check_sees_lazy_imports_and_loops() -> None:
    """The scan itself: an import inside a function counts, and a two-module loop is found."""
    src = "def f():\n    from deepbatch.cli import main\n"
    tree_imports = _imports_of_source(src)
    assert tree_imports == {"deepbatch.cli"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer_of("deepbatch.cli") > layer_of("deepbatch.stages.clean") > layer_of("deepbatch.modality.image") > layer_of("deepbatch.config")


def _imports_of_source(src: str, tmp: Path | None = None) -> set[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "probe.py"
        path.write_text(src)
        return _imports("deepbatch.probe", path, set(_modules()))
