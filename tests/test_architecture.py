"""The package's structure, checked on its import statements (tests/import_graph.py; see
ARCHITECTURE.md): no import cycle wider than two modules, and each pair that imports the
other is named here with its reason; the runtime imports nothing of the compiler; code
generation imports nothing of the graph passes; no module imports another's private name;
no library code searches generated kernel source (a renderer's output is final)."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from import_graph import a_cycle, import_edges, import_graph, package_modules, wide_cycles

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"graphc": ROOT / "graphc", "graphc.runtime": ROOT / "runtime",
           "graphc.models": ROOT / "models", "graphc.kernels_cl": ROOT / "kernels_cl"}

# The public API: the package itself, whose names graphc/_api.py binds.
FACADE = ("graphc", "graphc._api")
# Frontends written against the public API, as user code is (`import graphc as gc`); the
# API imports them in its turn to offer gc.nn, gc.optim, gc.losses... Their imports of the
# facade are the one kind of edge the cycle check leaves out; no other module imports it.
FRONTENDS = ("graphc.nn", "graphc.optim", "graphc.losses", "graphc.onnx", "graphc.distributed",
             "graphc.models", "graphc.serve")
# Modules that import each other, and why that is the simplest design.
ALLOWED_PAIRS = {
    frozenset({"graphc.ir", "graphc.inspection.printer"}):
        "Graph.__str__ prints the graph with the IR printer, which reads the IR",
    frozenset({"graphc.function", "graphc.export"}):
        "fn.export() writes the function; the export reads the Function's plan",
    frozenset({"graphc.nn.metrics", "graphc.nn.auc"}):
        "the metric factory offers AUC, which builds on Metric",
    frozenset({"graphc.nn.callbacks", "graphc.nn.eventlog"}):
        "the callbacks offer TensorBoard, which builds on Callback",
    frozenset({"graphc.nn.layer_options", "graphc.nn.mixed_precision"}):
        "layers take a dtype policy; a policy's model checks walk the layers",
    frozenset({"graphc.nn.model", "graphc.nn.model_json"}):
        "model.to_json() writes the architecture; reading one back builds a Model",
    frozenset({"graphc.optim.optimizers", "graphc.optim.loss_scale"}):
        "deserialize knows every optimizer; the loss-scale wrapper holds another one",
    frozenset({"graphc.runtime.device", "graphc.runtime.vulkan_device"}):
        "devices() lists the Vulkan devices after the OpenCL ones; a VulkanDevice is a Device",
    frozenset({"graphc.runtime.executable", "graphc.runtime.vulkan_executable"}):
        "Executable(device, plan) makes a VulkanExecutable on a Vulkan device, a subclass",
    frozenset({"graphc.distributed", "graphc.distributed.optimizer"}):
        "the package offers DistributedOptimizer, whose update asks the package's size() "
        "(which joins the world and picks this rank's device)",
}
RUNTIME = "graphc.runtime"


def within(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.fixture(scope="module")
def edges():
    return import_edges(package_modules(FOLDERS))


def checked_graph(edges) -> nx.DiGraph:
    """The import graph less the frontends' imports of the facade."""
    return import_graph([e for e in edges if not (within(e.source, FRONTENDS)
                                                  and e.target in FACADE)])


def describe(graph: nx.DiGraph, group) -> str:
    cycle = a_cycle(graph, group)
    lines = [" -> ".join(cycle + cycle[:1])]
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        for e in graph[a][b]["edges"]:
            where = "in a function" if e.in_function else "at module level"
            lines.append(f"  {a} line {e.line} imports {b} {list(e.names)} {where}")
    return "\n".join(lines)


def test_no_import_cycle_wider_than_two_modules(edges):
    graph = checked_graph(edges)
    problems = wide_cycles(graph, frozenset(ALLOWED_PAIRS))
    assert not problems, "import cycles:\n" + "\n".join(describe(graph, g) for g in problems)


def test_every_allowed_pair_still_imports_both_ways(edges):
    graph = checked_graph(edges)
    for pair, reason in ALLOWED_PAIRS.items():
        a, b = sorted(pair)
        assert reason and graph.has_edge(a, b) and graph.has_edge(b, a), \
            f"{a} and {b} no longer import each other: drop the pair from ALLOWED_PAIRS"


def test_only_frontends_import_the_public_api(edges):
    wrong = [e for e in edges if e.target in FACADE and e.source not in FACADE
             and not within(e.source, FRONTENDS)]
    assert not wrong, [f"{e.source} line {e.line} imports {e.target}" for e in wrong]


def test_the_runtime_imports_nothing_of_the_compiler(edges):
    wrong = [e for e in edges if within(e.source, [RUNTIME])
             and not within(e.target, [RUNTIME, "graphc.kernels_cl"])]
    assert not wrong, [f"{e.source} line {e.line} imports {e.target}" for e in wrong]


def test_code_generation_imports_nothing_of_the_passes(edges):
    wrong = [e for e in edges if within(e.source, ["graphc.codegen"])
             and within(e.target, ["graphc.passes"])]
    assert not wrong, [f"{e.source} line {e.line} imports {e.target}" for e in wrong]


def test_no_module_imports_another_modules_private_name(edges):
    wrong = [f"{e.source} line {e.line}: from {e.target} import {name}" for e in edges
             for name in e.names if name.startswith("_") and not name.startswith("__")]
    assert not wrong, wrong


# ---- the checker itself, on a planted tree ----

def plant(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package_modules({"pkg": root / "pkg"})


def test_the_checker_finds_a_planted_cycle_of_three_modules(tmp_path):
    modules = plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from pkg import c\n",         # function level counts
        "pkg/c.py": "import importlib\nimportlib.import_module('pkg.a')\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        "pkg/e.py": "from pkg.a import _hidden\n"})
    edges = import_edges(modules)
    graph = import_graph(edges)
    assert wide_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert not graph.has_edge("pkg.d", "pkg.a")                     # annotations only
    assert [n for e in edges for n in e.names if n.startswith("_")] == ["_hidden"]


def test_the_checker_tells_an_allowed_pair_from_a_wider_cycle(tmp_path):
    modules = plant(tmp_path, {"pkg/__init__.py": "from pkg import a\n",
                               "pkg/a.py": "import pkg\n"})
    graph = import_graph(import_edges(modules))
    assert wide_cycles(graph) == [["pkg", "pkg.a"]]
    assert wide_cycles(graph, frozenset({frozenset({"pkg", "pkg.a"})})) == []


# ---- generated source is final ----

SEARCHES = {"replace", "split", "rsplit", "partition", "rpartition", "find", "rfind", "index",
            "rindex", "count", "startswith", "endswith", "match", "search", "fullmatch",
            "findall", "finditer", "sub", "subn"}
# calls that return kernel source (a renderer's; KernelSource.text)
SOURCE_CALLS = {"render", "render_kernel", "render_raw", "render_rows", "render_merged",
                "kernel_parts", "member_function", "gemm_kernel", "program_source", "text"}
# Where a renderer fills a template it was handed (not source it generated, read back).
ALLOWED_SEARCHES = {
    ("graphc/codegen/gemm.py", "_render"):
        "indents the epilogue statement the GEMM template is filled with",
    ("graphc/codegen/gemm.py", "render_store"):
        "fills the {acc} {b} {i} {j} placeholders of an epilogue statement",
    ("runtime/vulkan_program.py", "split_program"):
        "splits a Vulkan program into its kernels' shaders at the `//@kernel` lines the GLSL "
        "renderer wrote (a SPIR-V module has one entry point; an OpenCL program has many)",
}


def source_searches(path: Path) -> list[tuple[str, int]]:
    """(function, line) of every string search or regex whose subject is kernel source: an
    expression reading `.source` or calling a renderer, or a name holding source (a parameter
    named after it, or a name assigned from such an expression) within the same function."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            tainted = _tainted_names(function)
            found += [(function.name, line) for line in _searches(function, tainted)]
    return found


def _mentions_source(node: ast.AST, tainted: set) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "source":
            return True
        if isinstance(sub, ast.Name) and sub.id in tainted:
            return True
        if isinstance(sub, ast.Call) and ast.unparse(sub.func).split(".")[-1] in SOURCE_CALLS:
            return True
    return False


def _tainted_names(function) -> set:
    tainted = {a.arg for a in function.args.args if "source" in a.arg}
    for _ in range(3):                      # names assigned from names assigned from...
        for node in ast.walk(function):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.For)):
                value = node.iter if isinstance(node, ast.For) else node.value
                targets = [node.target] if not isinstance(node, ast.Assign) else node.targets
                if value is not None and _mentions_source(value, tainted):
                    tainted |= {n.id for t in targets for n in ast.walk(t)
                                if isinstance(n, ast.Name)}
    return tainted


def _searches(function, tainted: set):
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in SEARCHES:
            subjects = [node.func.value] + list(node.args)
            if any(_mentions_source(s, tainted) for s in subjects):
                yield node.lineno
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn))
                                                   for op in node.ops):
            if any(_mentions_source(c, tainted) for c in node.comparators):
                yield node.lineno


def test_no_library_code_searches_generated_kernel_source():
    found = []
    for path in sorted((ROOT / "graphc").rglob("*.py")) + sorted((ROOT / "runtime").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        found += [f"{relative}:{line} in {function}" for function, line in source_searches(path)
                  if (relative, function) not in ALLOWED_SEARCHES]
    assert not found, "string searches over kernel source:\n" + "\n".join(found)


def test_the_search_finder_finds_what_the_compiler_once_did(tmp_path):
    planted = tmp_path / "old.py"
    planted.write_text(
        "import re\n"
        "HEADER = re.compile('__kernel')\n"
        "def mergeable(kernel):\n"
        "    return HEADER.match(kernel.source) is not None and 'barrier' not in kernel.source\n"
        "def rename(kernel, name):\n"
        "    body = render_kernel(kernel)\n"
        "    return body.replace('void K(', f'void {name}(', 1)\n"
        "def program(kernel_sources):\n"
        "    text = '\\n'.join(kernel_sources)\n"
        "    return 'double' in text\n"
        "def harmless(kernel, names):\n"
        "    return len(kernel.source), 'x' in names, '\\n'.join(names).split()\n")
    assert source_searches(planted) == [("mergeable", 4), ("mergeable", 4), ("rename", 7),
                                        ("program", 10)]
