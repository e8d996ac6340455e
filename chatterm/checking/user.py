"""The user's own checks: `/check EXPR` and `--check FILE` (asserts run against each
code answer, as aider's --test-cmd runs a repository's tests)."""

from __future__ import annotations

import ast
from pathlib import Path

from chatterm import safe_files
from chatterm.errors import InputError

MOST_BYTES = 256 << 10


def parse(text: str, where: str = "/check") -> list[str]:
    """The checks in `text`: each assert (or bare expression, asserted) with the
    statements before it as its set-up. InputError for code that does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as e:
        line = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        raise InputError(f"{where}: not Python{line}: {getattr(e, 'msg', e)}") from None
    checks: list[str] = []
    setup: list[str] = []
    for node in tree.body:
        source = ast.get_source_segment(text, node) or ast.unparse(node)
        if isinstance(node, ast.Expr):
            source = f"assert {source}"
        if isinstance(node, (ast.Assert, ast.Expr)):
            checks.append("\n".join([*setup, source]))
            setup = []
        else:
            setup.append(source)
    if not checks:
        raise InputError(f"{where}: no assert or expression to check")
    return checks


def read_file(path: str) -> list[str]:
    """--check FILE's checks."""
    try:
        data = safe_files.read_bytes(Path(path), MOST_BYTES, "--check file")
    except safe_files.RefusedFile as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"--check {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--check {path}: not UTF-8 text") from None
    return parse(text, f"--check {path}")
