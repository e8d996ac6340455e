"""The code of a reply that checks run against: the last closed code block (Python
or unmarked) that defines a function the checks call."""

from __future__ import annotations

import re

from chatterm.tools.intent import code_blocks


def defining(text: str, names: list[str]) -> str | None:
    """The last closed block of `text` defining one of `names` (any Python block when
    `names` is empty); None when there is none."""
    blocks = code_blocks(text)
    if not names:
        return blocks[-1] if blocks else None
    define = re.compile(rf"^\s*(?:async\s+)?def\s+({'|'.join(map(re.escape, names))})\s*\(", re.M)
    found = [b for b in blocks if define.search(b)]
    return found[-1] if found else None


def defines(code: str, names: list[str]) -> bool:
    return bool(names) and bool(re.search(
        rf"^\s*(?:async\s+)?def\s+({'|'.join(map(re.escape, names))})\s*\(", code, re.M))
