"""The code of a reply that checks run against: the last closed code block (Python
or unmarked) that defines a function the checks call, and of that code its
definitions (what the checks call), without its own demonstration lines."""

from __future__ import annotations

import ast
import re

from chatterm.tools.intent import code_blocks

# What a module keeps to be checked: what it imports and defines. Its own prints,
# asserts and `if __name__ == "__main__":` lines are the answer's demonstration: run as
# the checks' program (itself __main__), one wrong self-test would fail every check.
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
         ast.AnnAssign)


def _define(names: list[str]) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:async\s+)?def\s+({'|'.join(map(re.escape, names))})\s*\(", re.M)


def defining(text: str, names: list[str]) -> str | None:
    """The last closed block of `text` defining one of `names` (any Python block when
    `names` is empty); None when there is none."""
    blocks = code_blocks(text)
    if not names:
        return blocks[-1] if blocks else None
    define = _define(names)
    found = [b for b in blocks if define.search(b)]
    return found[-1] if found else None


def defines(code: str, names: list[str]) -> bool:
    return bool(names) and bool(_define(names).search(code))


def compiles(code: str) -> bool:
    try:
        compile(code, "<answer>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def definitions(code: str) -> str:
    """`code`'s imports, definitions and assignments at module level, each as written;
    `code` itself when it does not parse (the check then says why)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return code
    lines = code.splitlines()
    kept = []
    for node in tree.body:
        if not isinstance(node, _KEPT):
            continue
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        kept.append("\n".join(lines[start - 1:node.end_lineno]))
    return "\n".join(kept) if len(kept) < len(tree.body) else code
