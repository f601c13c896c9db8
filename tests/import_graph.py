"""The package's import graph, read from its source with `ast` (tests/test_architecture.py).

Every `import` and `from ... import` statement counts, at module level and inside functions
alike: a function-level import is a dependency all the same, only a later one (imports under
`if TYPE_CHECKING:`, which never run, are left out), and so does `importlib.import_module`
of a constant name. An import of `pkg.mod` adds an edge to `pkg.mod`; `from pkg import name`
adds one to `pkg.name` when that is a module of the package, else to `pkg` (its __init__).
The parent packages Python imports before any module are no edges of their own.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx


@dataclass(frozen=True)
class Edge:
    """One import statement: who imports what (`names`: the names taken from it)."""

    source: str
    target: str
    names: tuple[str, ...]
    line: int
    in_function: bool


def package_modules(folders: dict[str, Path]) -> dict[str, Path]:
    """Module name -> file for every .py file under each folder ({package name: folder})."""
    modules = {}
    for package, folder in folders.items():
        for path in sorted(Path(folder).rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import between the modules of `modules`."""
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        constants = _string_constants(tree)
        for node, in_function in _imports(tree):
            if isinstance(node, ast.Call):
                found = _known(constants.get(_dynamic_name(node), ""), modules)
                targets = [(found, ())] if found else []
            else:
                targets = _targets(node, package, modules)
            edges += [Edge(name, target, names, node.lineno, in_function)
                      for target, names in targets if target != name]
    return edges


def _string_constants(tree: ast.AST) -> dict:
    """Module-level `NAME = "text"` assignments, and every string literal as itself."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found[node.value] = node.value
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            found.update((t.id, node.value.value) for t in node.targets
                         if isinstance(t, ast.Name))
    return found


def _dynamic_name(call: ast.Call) -> str:
    """The argument of an `import_module(...)` call: a literal's text or a name."""
    arg = call.args[0]
    return arg.value if isinstance(arg, ast.Constant) else getattr(arg, "id", "")


def _imports(tree: ast.AST):
    """(import statement, inside a function?) for every import in `tree`."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) or _import_module_call(child):
                yield child, in_function
            stack.append((child, inner))


def _import_module_call(node: ast.AST) -> bool:
    """`importlib.import_module(x)` (under any alias of importlib) with one argument."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr == "import_module" and len(node.args) == 1


def _type_checking_only(node: ast.AST) -> bool:
    """An `if TYPE_CHECKING:` block (imports for annotations only)."""
    return isinstance(node, ast.If) and isinstance(node.test, (ast.Name, ast.Attribute)) \
        and ast.unparse(node.test).endswith("TYPE_CHECKING")


def _targets(node, package: str, modules: dict) -> list[tuple[str, tuple[str, ...]]]:
    if isinstance(node, ast.Import):
        return [(_known(alias.name, modules), ()) for alias in node.names
                if _known(alias.name, modules)]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    found = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        if full in modules:
            found.append((full, ()))
        elif _known(base, modules):
            found.append((_known(base, modules), (alias.name,)))
    return found


def _known(name: str, modules: dict) -> str | None:
    """`name`, or its nearest enclosing module of the package; None outside the package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(edges: list[Edge]) -> nx.DiGraph:
    """Modules as nodes, an edge per importing pair (carrying its statements)."""
    graph = nx.DiGraph()
    for edge in edges:
        if graph.has_edge(edge.source, edge.target):
            graph[edge.source][edge.target]["edges"].append(edge)
        else:
            graph.add_edge(edge.source, edge.target, edges=[edge])
    return graph


def wide_cycles(graph: nx.DiGraph, allowed_pairs=frozenset()) -> list[list[str]]:
    """The strongly connected groups of more than two modules, and the pairs not allowed."""
    problems = []
    for group in nx.strongly_connected_components(graph):
        if len(group) > 2 or (len(group) == 2 and frozenset(group) not in allowed_pairs):
            problems.append(sorted(group))
    return sorted(problems)


def a_cycle(graph: nx.DiGraph, group) -> list[str]:
    """One import cycle through the modules of `group`, to show in a failure."""
    return [a for a, _ in nx.find_cycle(graph.subgraph(group))]
