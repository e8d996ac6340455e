"""Text from outside is untrusted: it must never drive the terminal.

Every C0 control except newline and tab, DEL, and every C1 control (U+0080-U+009F,
which 8-bit terminals read as CSI/OSC/...) is replaced by a visible stand-in, so ESC
sequences (OSC 52 clipboard writes, OSC 8 links, CSI cursor moves), BEL, backspace
and carriage return arrive as inert text. A lone UTF-16 surrogate (a JSON "\\ud83d"
escape without its other half) becomes U+FFFD, so no stream fails to encode it.

Bidi embedding, override and isolate controls (U+202A-202E, U+2066-2069) are shown
the same way: a terminal that honours them would show code in another order than the
one it runs in.

`chatterm.ui.terminal` applies this to everything written to the terminal; call it
directly only for text that goes somewhere else (the clipboard, a code block kept).

`visible` is the stricter rule for what a tool call is approved on: every character
that is not printable and visible becomes an escape (see its docstring).
"""

from __future__ import annotations

import re
import unicodedata

from chatterm.surrogates import mend

_TABLE = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
          if c not in (0x09, 0x0A)}
_TABLE[0x1B] = "␛"  # ESC: the one users most need to recognise
_TABLE.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


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


# ------------------------------------------------------------ approvals
_NAMED = {"\a": "\\a", "\b": "\\b", "\v": "\\v", "\f": "\\f", "\r": "\\r"}
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}
# Default-ignorable code points outside those categories (Unicode's
# Default_Ignorable_Code_Point property): rendered as nothing by most terminals.
_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x3164, 0xFFA0,
              *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}
_SUSPECT = re.compile("[^\x20-\x7e\n\t]")  # only these are looked up
_LOOKS_ESCAPED = re.compile(r"\\[\\abvfrxuU]")  # text that would read as an escape


def _hidden(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _IGNORABLE or \
        unicodedata.category(char) in _HIDDEN_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible_parts(text: str) -> list[tuple[str, bool]]:
    """`text` as (piece, is_escape) pieces, by the one rule for text a user approves:
    every character that is not printable and visible (C0 and C1 controls but newline
    and tab, DEL, zero-width, bidi, tag and other format or default-ignorable code
    points, spaces other than U+0020, line and paragraph separators, private-use and
    unassigned code points, lone surrogates) becomes an escape as Python writes it
    (`\\r`, `\\u200b`, `\\U000e0041`). When any is escaped, or the text itself holds
    what reads as one, each backslash of the text is shown doubled, so what is shown
    reads back to exactly the text that runs (`unescape`)."""
    spans = [m.start() for m in _SUSPECT.finditer(text) if _hidden(m.group())]
    if not spans and _LOOKS_ESCAPED.search(text) is None:
        return [(text, False)] if text else []
    parts: list[tuple[str, bool]] = []
    last = 0
    for i in [*spans, len(text)]:
        if i > last:
            parts.append((text[last:i].replace("\\", "\\\\"), False))
        if i < len(text):
            parts.append((_escape(text[i]), True))
        last = i + 1
    return parts


def visible(text: str) -> str:
    """`text` by `visible_parts`' rule, as one string."""
    return "".join(piece for piece, _ in visible_parts(text))


def hidden_count(text: str) -> int:
    """How many characters `visible` escapes in `text`."""
    return sum(1 for m in _SUSPECT.finditer(text) if _hidden(m.group()))


def unescape(shown: str) -> str:
    """The text `visible` showed as `shown` (its inverse)."""
    if "\\" not in shown:
        return shown
    return re.sub(r"\\(\\|[abvfr]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", _unescape_one, shown)


def _unescape_one(match: re.Match) -> str:
    token = match.group(1)
    if token == "\\":
        return "\\"
    if token in "abvfr":
        return {"a": "\a", "b": "\b", "v": "\v", "f": "\f", "r": "\r"}[token]
    return chr(int(token[1:], 16))
