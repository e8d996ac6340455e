"""The examples a question gives for its functions, as checks chatterm can run.

Forms (docs/verified-code.md): doctests (`>>> f(x)` and the lines after it, with the
statements before it in the same block as set-up), and inline `CALL OP EXPECTED` where
OP is `==`, `==>`, `=`, `➞`, `→`, `=>`, `->`, "should return", "returns", "should be",
"gives", "evaluates to", or in Chinese 返回, 应返回, 应该返回, 应为, 结果是, 结果为, 等于,
得到; "CALL raises NAME" / 抛出 expects an exception. CALL is `name(...)` with balanced
brackets; EXPECTED is the longest start of the rest of the line that is a Python
expression (`true`/`false` read as Python's); the call's arguments are values, never
names (`poly(x) = 0` is prose). Only the user's text is read: a model's own examples agree with its bugs.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass
from typing import Any

VALUE, OUTPUT, RAISES = "value", "output", "raises"
MOST = 40  # examples taken from one question: a question is not a test suite


@dataclass(frozen=True)
class Example:
    call: str  # the expression run: `sum_to(3)`
    expected: str  # VALUE: an expression; OUTPUT: the text a doctest shows; RAISES: an exception's name
    kind: str = VALUE
    setup: tuple[str, ...] = ()  # statements run first (a doctest's `>>> x = 3`)
    function: str = ""  # the function the call names

    @property
    def shown(self) -> str:
        """The example as one line, for a failure's message."""
        if self.kind == RAISES:
            return f"{self.call} raises {self.expected}"
        return f"{self.call} == {self.expected.strip()}" if self.kind == VALUE else f">>> {self.call}"


_OPS = (r"==>|==|=>|->|=(?!=)|➞|→|⇒|should\s+return|should\s+be|returns?|gives|should\s+give|evaluates\s+to"
        r"|应该返回|应当返回|应返回|返回|应为|应该是|结果是|结果为|等于|得到")
_RAISE_OPS = r"should\s+raise|raises|抛出|引发"
_INLINE = re.compile(rf"`?\s*(?:#\s*)?(?:(?P<raise>{_RAISE_OPS})|(?P<op>{_OPS}))[ \t:：]*", re.I)
_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")
_DOCTEST = re.compile(r"^([ \t]*)>>>[ \t]?(.*)$")
_TRAIL = " \t,.;:，。；、)"  # what ends an example in prose
_NOT_FUNCTIONS = frozenset({"print", "assert", "len", "sorted", "list", "dict", "set", "tuple", "str", "int",
                            "float", "range", "type", "isinstance", "round", "abs", "sum", "min", "max"})


def extract(question: str, most: int = MOST) -> list[Example]:
    """The question's examples, doctests first, each once, at most `most`."""
    found: list[Example] = []
    doctest_lines: set[int] = set()
    for example, lines in _doctests(question):
        found.append(example)
        doctest_lines |= lines
    for number, line in enumerate(question.splitlines()):
        if number not in doctest_lines:
            found += _inline(line)
    return list(dict.fromkeys(found))[:most]


def _doctests(text: str) -> list[tuple[Example, set[int]]]:
    """(example, the line numbers it covers) for each `>>>` whose expression is a call
    of a function; statements are the set-up of the examples after them in the block."""
    lines = text.splitlines()
    out: list[tuple[Example, set[int]]] = []
    setup: list[str] = []
    i = 0
    while i < len(lines):
        match = _DOCTEST.match(lines[i])
        if not match:
            if not lines[i].strip():
                setup = []  # a blank line ends a block
            i += 1
            continue
        indent, source = match.group(1), match.group(2)
        covered = {i}
        i += 1
        while i < len(lines) and lines[i].startswith(indent) and lines[i][len(indent):].startswith("..."):
            source += "\n" + lines[i][len(indent) + 3:].removeprefix(" ")
            covered.add(i)
            i += 1
        expected: list[str] = []
        while i < len(lines) and lines[i].strip() and not _DOCTEST.match(lines[i]) \
                and not lines[i].strip().startswith(('"""', "'''", "```")) \
                and lines[i].startswith(indent) and (indent or not expected):  # in prose: one line
            expected.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
            covered.add(i)
            i += 1
        tree = _parse(source, "exec")
        if tree is None or len(tree.body) != 1:
            continue
        if not isinstance(tree.body[0], ast.Expr):
            setup.append(source)
            continue
        function = _called(tree.body[0].value)
        if not function:
            continue
        source = ast.unparse(tree.body[0].value) if "#" in source else source  # without its comment
        if expected and (expected[0].startswith("Traceback") or re.match(r"\w+(Error|Exception)\b", expected[0])):
            name = re.match(r"([\w.]+)", expected[-1] if expected[0].startswith("Traceback") else expected[0])
            if name:
                out.append((Example(source, name.group(1).split(".")[-1], RAISES, tuple(setup), function), covered))
            continue
        out.append((Example(source, "\n".join(expected), OUTPUT, tuple(setup), function), covered))
    return out


def _inline(line: str) -> list[Example]:
    """`CALL OP EXPECTED` examples on one line of prose or code."""
    out = []
    for match in _NAME.finditer(line):
        name = match.group(1)
        if keyword.iskeyword(name) or name in _NOT_FUNCTIONS \
                or re.search(r"\b(def|class)\s*$", line[:match.start()]):
            continue
        end = _close(line, match.end() - 1)
        if end is None:
            continue
        call = line[match.start():end]
        tree = _parse(call, "eval")
        if tree is None or any(isinstance(n, ast.Name) for a in _arguments(tree) for n in ast.walk(a)):
            continue  # `poly(x) = 0` in prose: an example gives values, not names
        op = _INLINE.match(line, end)
        if not op:
            continue
        rest = line[op.end():]
        if op.group("raise"):
            raised = re.match(r"(?:an?\s+)?`?([A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit))", rest)
            if raised:
                out.append(Example(call, raised.group(1), RAISES, function=name))
            continue
        expected = _longest_expression(re.sub(r"^(true|false)\b", lambda m: m.group(1).title(), rest.lstrip()))
        if expected is not None:
            out.append(Example(call, expected, VALUE, function=name))
    return out


def _arguments(tree: ast.AST) -> list[ast.AST]:
    call = tree.body if isinstance(tree, ast.Expression) else None
    return [*call.args, *(k.value for k in call.keywords)] if isinstance(call, ast.Call) else []


def _close(text: str, start: int) -> int | None:
    """The end (exclusive) of the bracketed group opening at `text[start]`, strings
    skipped; None if it does not close on this line."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote) - 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _longest_expression(text: str) -> str | None:
    """The longest start of `text` that is a Python expression (cut at a word
    boundary or punctuation, which prose puts after a value), not a bare word."""
    text = _first_clause(text.split("  #")[0].split(" # ")[0].rstrip().replace("`", " "))
    ends = sorted({len(text), *(m.start() for m in re.finditer(r"[ \t,.;:，。；、)\]}]", text))}, reverse=True)
    for end in ends:
        raw = text[:end].rstrip()
        for piece in dict.fromkeys((raw.rstrip(_TRAIL), raw)):
            tree = _parse(piece, "eval") if piece else None
            if tree is not None and _plausible(tree):
                return piece
    return None


def _first_clause(text: str) -> str:
    """`text` up to its first separator outside brackets and strings (`,` `;` "and",
    Chinese punctuation): prose lists examples one after another."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return text[:i]
        elif depth == 0 and (c in ",;，；。、" or text.startswith((" and ", " or ", " 和 "), i)):
            return text[:i]
        i += 1
    return text


def _plausible(tree: ast.Expression) -> bool:
    """A value an example can expect: a literal, a container, arithmetic, a call; a
    bare name only when it is True, False or None (a word of prose is none)."""
    node = tree.body
    if isinstance(node, ast.Name):
        return False
    if any(isinstance(n, ast.Call) and not isinstance(n.func, (ast.Name, ast.Attribute)) for n in ast.walk(node)):
        return False  # `{'a': 1} (e.g. ...)`: a value, then prose in brackets
    return not any(isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield)) for n in ast.walk(node))


def _called(node: ast.AST) -> str:
    """The function an expression calls first, found outside in (`f(x)`, `sorted(f(x))`
    -> f, `print(f(x))` -> f), "" if it calls none of the user's functions."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id not in _NOT_FUNCTIONS:
            return sub.func.id
    return ""


def _parse(source: str, mode: str) -> Any:
    """`source` parsed (an `ast.Module` for "exec", an `ast.Expression` for "eval"), or None."""
    try:
        return ast.parse(source, mode=mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def imports(question: str) -> list[str]:
    """The question's own import lines (an answer often leaves them out)."""
    return [line.strip() for line in question.splitlines()
            if re.match(r"\s*(import\s+[\w.]+|from\s+[\w.]+\s+import\s+[\w*(])", line)]
