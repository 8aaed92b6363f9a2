"""The package's import graph has no cycle (imports inside functions included): layers only
import downwards (docs/design.md, Layers)."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "lightning_discrete"


def _modules():
    """``{dotted module name: (path, is package __init__)}`` of every file of the package."""
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
                is_package = dotted.endswith(".__init__")
                out[dotted[: -len(".__init__")] if is_package else dotted] = (path, is_package)
    return out


def import_graph():
    """``{module: set of package modules it imports}``, from every ``import`` / ``from`` statement
    anywhere in the file (module level, functions, ``try`` blocks, ``if TYPE_CHECKING``)."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        base = name if is_package else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                    source = ".".join(parts + ([node.module] if node.module else []))
                else:
                    source = node.module
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    deps.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def find_cycle(graph):
    """One import cycle as a list ``[a, b, ..., a]``, or None (depth-first search)."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_checker_finds_cycles_and_resolves_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    graph = import_graph()
    # cli.py imports the sweep package and trainer_cli; the sweep runner imports trainer_cli
    assert {"lightning_discrete.trainer_cli", "lightning_discrete.sweep"} <= graph["lightning_discrete.cli"]
    assert "lightning_discrete.trainer_cli" in graph["lightning_discrete.sweep.runner"]


def test_lightning_discrete_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cli_is_the_top_of_the_graph():
    graph = import_graph()
    assert not [m for m, deps in graph.items() if "lightning_discrete.cli" in deps and m != "lightning_discrete.__main__"]
    # nothing below the sweep imports it: the sweep depends on the training CLI, not the reverse
    users = {m for m, deps in graph.items() if any(d.startswith("lightning_discrete.sweep") for d in deps)}
    assert {u for u in users if not u.startswith("lightning_discrete.sweep")} == {"lightning_discrete.cli"}
