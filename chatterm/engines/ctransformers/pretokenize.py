"""Pre-tokenizer splits for byte-level BPE vocabularies, as llama.cpp does them.

Ported from llama.cpp `src/unicode.cpp` (`unicode_regex_split_custom_gpt2`,
`..._llama3`) so that token ids match llama.cpp's exactly; the tokenizer-equality
test holds us to that. Character classes come from `unicodedata`: \\p{L} is any L*
category, \\p{N} any N* category, and \\s is llama.cpp's whitespace set.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache

WHITESPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
     0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

LETTER, NUMBER, SPACE, OTHER = 1, 2, 3, 4


@lru_cache(maxsize=65536)
def char_class(ch: str) -> int:
    if ord(ch) in WHITESPACE:
        return SPACE
    cat = unicodedata.category(ch)[0]
    return LETTER if cat == "L" else NUMBER if cat == "N" else OTHER


def split_digits(text: str) -> list[str]:
    """The regex `\\p{N}`: every number character becomes its own piece."""
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if char_class(ch) == NUMBER:
            if i > start:
                pieces.append(text[start:i])
            pieces.append(ch)
            start = i + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def split_gpt2(text: str) -> list[str]:
    """'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"""
    n = len(text)
    cls = [char_class(c) for c in text]
    out: list[str] = []
    pos = 0
    while pos < n:
        c = text[pos]
        if c == "'" and pos + 1 < n:
            nxt = text[pos + 1]
            if nxt in "stmd":
                out.append(text[pos:pos + 2])
                pos += 2
                continue
            if pos + 2 < n and text[pos + 1:pos + 3] in ("re", "ve", "ll"):
                out.append(text[pos:pos + 3])
                pos += 3
                continue
        start = pos
        kind = cls[pos + 1] if c == " " and pos + 1 < n else (0 if c == " " else cls[pos])
        if kind in (LETTER, NUMBER, OTHER):
            pos += c == " "
            while pos < n and cls[pos] == kind:
                pos += 1
            out.append(text[start:pos])
            continue
        pos = _space_run_end(cls, pos, n)
        out.append(text[start:pos])
    return out


def _space_run_end(cls: list[int], pos: int, n: int) -> int:
    """End of `\\s+(?!\\S)|\\s+` at `pos` (or of one other character)."""
    spaces = 0
    while pos + spaces < n and cls[pos + spaces] == SPACE:
        spaces += 1
    if spaces > 1 and pos + spaces < n:  # leave one space for the next word
        return pos + spaces - 1
    return pos + max(spaces, 1)


def split_llama3(text: str, max_digits: int = 3) -> list[str]:
    """(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|
    ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+  (max_digits=1 gives Qwen2's)"""
    n = len(text)
    cls = [char_class(c) for c in text]
    out: list[str] = []
    pos = 0

    def cl(i: int) -> int:
        return cls[i] if i < n else 0

    while pos < n:
        c = text[pos]
        start = pos
        if c == "'" and pos + 1 < n:
            nxt = text[pos + 1].lower()
            if nxt in "stmd":
                out.append(text[pos:pos + 2])
                pos += 2
                continue
            if pos + 2 < n and text[pos + 1:pos + 3].lower() in ("re", "ve", "ll"):
                out.append(text[pos:pos + 3])
                pos += 3
                continue
        # [^\r\n\p{L}\p{N}]?\p{L}+
        if not (c in "\r\n" or cls[pos] in (LETTER, NUMBER)) and cl(pos + 1) == LETTER or cls[pos] == LETTER:
            pos += 1
            while cl(pos) == LETTER:
                pos += 1
            out.append(text[start:pos])
            continue
        if cls[pos] == NUMBER:
            while cl(pos) == NUMBER and pos - start < max_digits:
                pos += 1
            out.append(text[start:pos])
            continue
        # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        first = pos + (c == " ")
        if cl(first) == OTHER:
            pos = first
            while cl(pos) == OTHER:
                pos += 1
            while pos < n and text[pos] in "\r\n":
                pos += 1
            out.append(text[start:pos])
            continue
        end, last_newline_end = pos, 0
        while cl(end) == SPACE:
            end += 1
            if text[end - 1] in "\r\n":
                last_newline_end = end
        # \s*[\r\n]+ first, then as GPT-2
        pos = last_newline_end or _space_run_end(cls, pos, n)
        out.append(text[start:pos])
    return out


def _chain(*steps: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    def run(text: str) -> list[str]:
        pieces = [text]
        for step in steps:
            pieces = [p for piece in pieces for p in step(piece)]
        return pieces
    return run


# `tokenizer.ggml.pre` value -> splitter, for the pre-tokenizers we reproduce.
SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "gpt-2": split_gpt2, "gpt2": split_gpt2, "default": split_gpt2, "mpt": split_gpt2,
    "olmo": split_gpt2, "jais": split_gpt2,
    "smollm": _chain(split_digits, split_gpt2), "starcoder": _chain(split_digits, split_gpt2),
    "refact": _chain(split_digits, split_gpt2), "command-r": _chain(split_digits, split_gpt2),
    "codeshell": _chain(split_digits, split_gpt2), "exaone": _chain(split_digits, split_gpt2),
    "llama3": split_llama3, "llama-bpe": split_llama3, "llama-v3": split_llama3,
    "dbrx": split_llama3, "smaug-bpe": split_llama3,
    "qwen2": lambda t: split_llama3(t, 1), "stablelm2": lambda t: split_llama3(t, 1),
}
