"""Lone UTF-16 surrogates: what a JSON "\\ud83d" escape without its other half becomes
in Python. No stream can encode one, so text from outside is mended where it enters
(a server's stream, a session file) and again where it leaves (the terminal)."""

from __future__ import annotations

import re

SURROGATE = re.compile("[\ud800-\udfff]")


def mend(text: str) -> str:
    """`text` with surrogate pairs joined into their character and lone halves U+FFFD."""
    if not SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
