"""The library's modules import each other without a cycle, counting imports made inside functions.

A function-level import hides a cycle from Python (it runs after both modules have loaded) but not from
the reader; this static check counts it, so a cycle cannot be dodged that way. Imports inside
``if TYPE_CHECKING:`` never run and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> source folder (pyproject's package-dir: ann2snn.cli and ann2snn.calibration live at the top)
PACKAGES = {"ann2snn": ROOT / "ann2snn", "ann2snn.cli": ROOT / "cli", "ann2snn.calibration": ROOT / "calibration"}


def library_modules() -> dict[str, Path]:
    mods = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([package, *parts])] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_edges(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """{module: {library module it imports: line}}; ``from pkg import name`` counts pkg.name when that
    is a module, else pkg."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, dict[str, int]] = {}
    for module, path in mods.items():
        is_package = path.name == "__init__.py"
        out = edges.setdefault(module, {})
        stack = [ast.parse(path.read_text(), str(path))]
        while stack:
            node = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    stack.extend(child.orelse)
                    continue
                targets = []
                if isinstance(child, ast.Import):
                    targets = [resolve(a.name) for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = module if is_package else module.rpartition(".")[0]
                        for _ in range(child.level - 1):
                            anchor = anchor.rpartition(".")[0]
                        base = f"{anchor}.{base}" if base else anchor
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base)
                               for a in child.names]
                for t in targets:
                    if t and t != module:
                        out.setdefault(t, child.lineno)
                stack.append(child)
    return edges


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(edges.get(nxt, {}))))
    return None


def test_library_has_no_import_cycle():
    mods = library_modules()
    assert len(mods) > 50 and "ann2snn.convert.session" in mods and "ann2snn.cli.main" in mods
    edges = import_edges(mods)
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(
        f"{a} (line {edges[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_check_sees_cycles_through_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n\n"
        "def g():\n    from pkg import a  # hidden from Python, not from the check\n    return a\n")
    (pkg / "c.py").write_text("import pkg.b\n")
    mods = {"pkg": pkg / "__init__.py", **{f"pkg.{m}": pkg / f"{m}.py" for m in "abc"}}
    edges = import_edges(mods)
    assert edges["pkg.b"] == {"pkg.a": 6}  # the TYPE_CHECKING import of c is not counted
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.a"]
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_edges(mods)) is None
