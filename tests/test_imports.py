"""eve's imports form layers (issue 33): no import circle between its modules, and no package imports one above it.

Every `import` counts, those inside functions included (a lazy import is still a dependency; it only hides the
circle until run time). `from eve.models import known` is an import of the submodule `eve.models.known`, not of the
package's `__init__`.
"""

from __future__ import annotations

import ast
from pathlib import Path

EVE = Path(__file__).resolve().parents[1] / "eve"

# Lowest first. A module may import its own package and any package of a lower layer; packages in one layer may not
# import each other (training and editing both stand on the models, neither on the other).
LAYERS = [
    {"eve.errors"},
    {"eve.config", "eve.tasks", "eve.utils"},
    {"eve"},  # the package's __init__: the thread policy every entry point gets
    {"eve.diffusion", "eve.losses", "eve.data"},
    {"eve.models"},
    {"eve.train", "eve.editing"},
    {"eve.eval", "eve.export", "eve.worlds"},
    {"eve.demo", "eve.app"},
]


def modules() -> dict[str, Path]:
    out = {}
    for p in EVE.rglob("*.py"):
        name = ".".join(p.relative_to(EVE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The eve modules `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + [node.module] if node.module else base)
            subs = {f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known}
            out |= subs if len(subs) == len(node.names) else subs | {module}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    top = ".".join(module.split(".")[:2])
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its package {top} has no layer in tests/test_imports.py (add it)")


def test_no_import_circles():
    assert circles(graph()) == []


def test_the_walker_finds_a_circle_and_reads_relative_imports():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = {"eve.models", "eve.models.known", "eve.models.lora", "eve.errors"}
    source = EVE / "models" / "composed.py"
    assert {"eve.models.known", "eve.models.lora", "eve.errors"} <= imports("eve.models.composed", source, known)


def test_nothing_is_imported_upward_or_sideways():
    wrong = [f"{a} imports {b}" for a, deps in graph().items() for b in deps
             if ".".join(a.split(".")[:2]) != ".".join(b.split(".")[:2]) and layer(b) >= layer(a)]
    assert wrong == []
