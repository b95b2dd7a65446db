"""The shape of the code: no import cycles between modules, no module over 600 lines.

The import graph is read from the source (``ast``), including imports inside functions: a
function-level import that closes a loop is still a cycle, only a later one. An edge goes to
the module named (``from headless.boxes import Box`` -> ``headless.boxes``, the package's
``__init__``), or to a submodule when one is imported by name (``from headless.sam import
model``). Package ``__init__`` files that re-export lazily (``headless.lazy``) add no edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("headless", "napari_dinoseg")
MAX_LINES = 600


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """``module -> modules it imports`` for every ``.py`` file of ``packages`` under ``root``."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in files] or [target]
            else:
                continue
            deps.update(t for t in targets if t in files and t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / "headless"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from headless.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from headless.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text("from headless.sub import f\n")  # into the cycle, not part of it
    graph = import_graph(tmp_path, ("headless",))
    assert graph["headless.sub.b"] == {"headless.sub.a"}
    assert cycles(graph) == [["headless.sub.a", "headless.sub.b"]]


def test_the_packages_read_as_folders_of_concerns():
    """Each engine concern is a package whose ``__init__`` says what it holds."""
    for pkg in ("features", "segment", "boxes", "boxes/localize", "sam", "train", "jobs", "cli"):
        init = ROOT / "headless" / pkg / "__init__.py"
        assert init.exists(), init
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{init} has no docstring saying what it holds"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_over_600_lines(package):
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"split these along their seams (over {MAX_LINES} lines): {big}"
