"""Untrusted text never becomes control tokens.

A local prompt is the chat template's markup around text from outside: what the user
typed, files given to -f, tool and MCP results, earlier replies, tool schemas. The
engine tokenizes the rendered prompt with special tokens parsed (the markup needs
it), so `<|im_end|>\n<|im_start|>system` written in any of that text would open a real
system turn. Here each such string in the text is swapped, before rendering, for a
placeholder code point of Unicode's plane-15 private use area, which no template
touches; after rendering, the prompt is tokenized piece by piece: the markup with
special tokens parsed, each placeholder as the plain text it stood for.

A placeholder character that is itself in the text (a user may type any character)
is kept as what it is: it is written as the escape placeholder followed by itself,
and tokenized as plain text.

Every string that reaches the template is guarded: values, and the keys of objects
(a tool schema's property names, a call's argument names), at any depth.

Which strings: the texts of the model's control tokens, and of its user-defined
tokens that the template itself uses (`<tool_call>` for Qwen2.5); other user-defined
tokens (runs of spaces, HTML tags in some vocabularies) are ordinary text that the
tokenizer always makes one token, as the model was trained.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

BASE = 0xF0000  # the first placeholder (Supplementary Private Use Area-A)
LIMIT = 0xFFFE  # placeholders there are


class PlainText:
    def __init__(self, texts: list[str]):
        """`texts`: the strings that must stay plain text wherever they come from outside."""
        self.texts = sorted({t for t in texts if t}, key=len, reverse=True)[:LIMIT]
        self._index = {t: i for i, t in enumerate(self.texts)}
        # The placeholders, then the escape: a character of that range in the text is
        # written as the escape and itself.
        self._escape = chr(BASE + len(self.texts))
        placeholders = f"[{chr(BASE)}-{self._escape}]"
        self._find = (re.compile("|".join([*map(re.escape, self.texts), placeholders]))
                      if self.texts else None)
        self._placeholder = re.compile(f"({re.escape(self._escape)}[\\s\\S]|{placeholders})")

    @classmethod
    def of(cls, markup: dict[str, list[str]], template: str) -> PlainText:
        """From an engine's `markup` ({"control": [...], "user": [...]}) and the chat
        template's source."""
        user = [t for t in markup.get("user", []) if t.strip() and t in template]
        return cls([*markup.get("control", []), *user])

    def __bool__(self) -> bool:
        return self._find is not None

    def text(self, text: str) -> str:
        """`text` with each guarded string swapped for its placeholder."""
        if self._find is None or not text:
            return text
        return self._find.sub(self._swap, text)

    def _swap(self, match: re.Match[str]) -> str:
        found = match.group()
        i = self._index.get(found)
        return chr(BASE + i) if i is not None else self._escape + found

    def value(self, value: Any) -> Any:
        """Every string in `value` (a message, arguments, a tool schema), keys too,
        guarded at any depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def tokenize(self, text: str, tokenize: Callable[[str, bool], list[int]]) -> list[int]:
        """Token ids of a rendered prompt: markup with special tokens parsed, each
        placeholder as its plain text (`tokenize(text, special)` is the engine's)."""
        if self._find is None or self._placeholder.search(text) is None:
            return tokenize(text, True)
        ids: list[int] = []
        for n, piece in enumerate(self._placeholder.split(text)):
            if n % 2 == 0:
                if piece:
                    ids += tokenize(piece, True)
                continue
            if piece[0] == self._escape:  # a character the text had itself
                ids += tokenize(piece[1], False)
                continue
            plain = self.texts[ord(piece) - BASE]
            # In two parts: neither can be the whole token again (user-defined tokens are
            # matched even in plain text).
            ids += tokenize(plain[:1], False) + tokenize(plain[1:], False)
        return ids

    def shown(self, text: str) -> str:
        """`text` with each placeholder back as the string it stands for."""
        if self._find is None:
            return text
        return self._placeholder.sub(self._unswap, text)

    def _unswap(self, match: re.Match[str]) -> str:
        found = match.group()
        return found[1] if found[0] == self._escape else self.texts[ord(found) - BASE]
