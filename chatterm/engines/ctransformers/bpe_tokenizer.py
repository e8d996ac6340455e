"""Byte-level BPE tokenizer built from a GGUF vocabulary, matching llama.cpp's ids.

ctransformers' own BPE path skips the GPT-2 byte-to-unicode mapping, so it tokenizes
SmolLM2, Llama 3 and the like wrongly. chatterm tokenizes and detokenizes for it with
this class instead; `tests/test_tokenizer.py` checks the ids against llama.cpp.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from chatterm.engines.ctransformers.pretokenize import SPLITTERS
from chatterm.errors import ModelFileError

# GGUF `tokenizer.ggml.token_type` values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def special_tokens(tokens: list[str], types: list[int], kinds: tuple[int, ...]) -> list[tuple[str, int]]:
    """(text, id) of the tokens of `kinds`, longest first, as llama.cpp matches them."""
    found = [(tokens[i], i) for i, t in enumerate(types) if t in kinds and tokens[i]]
    return sorted(found, key=lambda s: -len(s[0]))


def partition(text: str, specials: list[tuple[str, int]]) -> list[str | int]:
    """Split `text` into plain fragments and the ids of special tokens written in it."""
    fragments: list[str | int] = [text]
    for token, tid in specials:
        if not any(isinstance(f, str) and token in f for f in fragments):
            continue
        split: list[str | int] = []
        for frag in fragments:
            if isinstance(frag, int) or token not in frag:
                split.append(frag)
                continue
            for k, part in enumerate(frag.split(token)):
                if k:
                    split.append(tid)
                if part:
                    split.append(part)
        fragments = split
    return fragments


class BPETokenizer:
    def __init__(self, tokens: list[str], types: list[int], merges: list[str], pre: str,
                 bos_id: int | None, add_bos: bool):
        if pre not in SPLITTERS:
            raise ModelFileError(f"pre-tokenizer {pre!r} is not supported by chatterm's "
                                 "tokenizer for ctransformers; use --engine llama.cpp")
        self.split = SPLITTERS[pre]
        self.tokens = tokens
        self.types = types
        self.ids = {t: i for i, t in enumerate(tokens)}
        # Keyed by the merge as written ("left right"): byte-level symbols hold no
        # space, and building 49k (left, right) tuples at load took 30 ms.
        self.ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.bos_id = bos_id
        self.add_bos = add_bos
        self.ignore_merges = pre in ("llama3", "llama-bpe", "llama-v3")
        b2u = byte_to_unicode()
        self.byte_encoder = b2u
        self.byte_decoder = {c: b for b, c in b2u.items()}
        # Longest first, as llama.cpp partitions (control/unknown only when special).
        self.specials = special_tokens(tokens, types, (CONTROL, USER_DEFINED, UNKNOWN))
        self.user_defined = special_tokens(tokens, types, (USER_DEFINED,))
        self._pieces: dict[int, bytes] = {}
        self._word_cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf(cls, gguf: Any) -> BPETokenizer:
        md = gguf.metadata
        try:
            tokens = md["tokenizer.ggml.tokens"]
            merges = md["tokenizer.ggml.merges"]
        except KeyError as e:
            raise ModelFileError(f"{gguf.path}: vocabulary has no {e.args[0]}") from None
        types = md.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
        return cls(tokens, list(types), merges, str(md.get("tokenizer.ggml.pre", "default")),
                   md.get("tokenizer.ggml.bos_token_id"),
                   bool(md.get("tokenizer.ggml.add_bos_token", False)))

    # ------------------------------------------------------------ encoding
    def encode(self, text: str, *, special: bool = True, add_bos: bool = False) -> list[int]:
        out: list[int] = []
        if add_bos and self.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        for fragment in partition(text, self.specials if special else self.user_defined):
            if isinstance(fragment, int):
                out.append(fragment)
            else:
                for word in self.split(fragment):
                    out.extend(self._encode_word(word))
        return out

    def _encode_word(self, word: str) -> list[int]:
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        encoded = "".join(self.byte_encoder[b] for b in word.encode("utf-8", "surrogatepass"))
        if self.ignore_merges and encoded in self.ids:
            result = [self.ids[encoded]]
        else:
            result = []
            for sym in self._merge(list(encoded)):
                tid = self.ids.get(sym)
                if tid is not None:
                    result.append(tid)
                else:  # fall back to one token per byte character, as llama.cpp does
                    result.extend(self.ids[c] for c in sym if c in self.ids)
        if len(self._word_cache) < 100_000:
            self._word_cache[word] = result
        return result

    def _merge(self, symbols: list[str]) -> list[str]:
        ranks = self.ranks
        while len(symbols) > 1:
            best, best_rank = -1, None
            for i in range(len(symbols) - 1):
                r = ranks.get(symbols[i] + " " + symbols[i + 1])
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best < 0:
                break
            symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
        return symbols

    # ------------------------------------------------------------ decoding
    def _piece(self, tid: int) -> bytes:
        text, kind = self.tokens[tid], self.types[tid]
        if kind in (CONTROL, UNKNOWN, USER_DEFINED):
            return text.encode("utf-8", "surrogateescape")
        try:
            return bytes(self.byte_decoder[c] for c in text)
        except KeyError:
            return text.encode("utf-8", "surrogateescape")

    def piece(self, tid: int, *, special: bool = False) -> bytes:
        """The bytes of one token; control tokens are empty unless `special`."""
        if not special and self.types[tid] in (CONTROL, UNKNOWN):
            return b""
        cached = self._pieces.get(tid)
        if cached is None:
            cached = self._pieces[tid] = self._piece(tid)
        return cached

    def decode(self, ids: list[int], *, special: bool = False) -> str:
        return b"".join(self.piece(i, special=special) for i in ids).decode("utf-8", "replace")
