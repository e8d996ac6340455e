"""Text from outside is untrusted: it must never drive the terminal.

Every C0 control except newline and tab, DEL, and every C1 control (U+0080-U+009F,
which 8-bit terminals read as CSI/OSC/...) is replaced by a visible stand-in, so ESC
sequences (OSC 52 clipboard writes, OSC 8 links, CSI cursor moves), BEL, backspace
and carriage return arrive as inert text. A lone UTF-16 surrogate (a JSON "\\ud83d"
escape without its other half) becomes U+FFFD, so no stream fails to encode it.

`chatterm.ui.terminal` applies this to everything written to the terminal; call it
directly only for text that goes somewhere else (the clipboard, a code block kept).
"""

from __future__ import annotations

import re

from chatterm.surrogates import mend

_TABLE = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
          if c not in (0x09, 0x0A)}
_TABLE[0x1B] = "␛"  # ESC: the one users most need to recognise
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` made inert (`text` itself when there was nothing to do: the common case
    costs one scan, no copy)."""
    if _UNSAFE.search(text) is None:
        return text
    return mend(text.translate(_TABLE))


def one_line(text: str) -> str:
    """`clean(text)` that stays on its line: newlines and tabs shown as \\n and \\t (for
    names, which must read as they are spelled: a file name may hold a newline)."""
    return clean(text).replace("\n", "\\n").replace("\t", "\\t")
