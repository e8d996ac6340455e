"""JSON from outside (a model's call, a server's event, a session's stored arguments),
parsed with its nesting bounded: Python's parser recurses once per level, so a call
nested 100,000 deep would end the chat with a RecursionError, and one nested a few
hundred deep would pass the parser and overflow whatever walks it next. One pass over
the brackets outside strings finds the depth first; the regular expressions do the
scanning, so it costs about what the parse does."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # levels of objects and lists: far more than any call's arguments need

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def depth(text: str) -> int:
    """The deepest nesting of objects and lists in `text` (JSON or most of it)."""
    deepest = level = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads(text: str) -> Any:
    """`json.loads(text)`, or ValueError for JSON that does not parse or nests deeper
    than MAX_DEPTH."""
    if ("[" in text or "{" in text) and depth(text) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
