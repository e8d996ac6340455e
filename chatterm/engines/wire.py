"""Frames between chatterm and its engine worker, over a pair of pipes.

A frame is a 4-byte big-endian length, a 1-byte kind, and a payload. Requests and
results are JSON; a streamed token is packed binary (id, end-of-generation flag, the
bytes it stands for), so the per-token cost is one small write and one read, and the
parent never has to ask for a token's text.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

REQUEST = b"q"  # parent -> worker: {"id", "op", ...}
STOP = b"s"  # parent -> worker: end the generation in progress (no payload)
READY = b"y"  # worker -> parent: the loaded engine's description, or why loading failed
RESULT = b"r"  # worker -> parent: {"id", "value"} or {"id", "error": {"type", "message"}}
TOKEN = b"t"  # worker -> parent: <id:int32><eog:uint8><piece bytes>
END = b"e"  # worker -> parent: {"id", "reason"}: a generation is over

_HEADER = struct.Struct(">IB")
_TOKEN = struct.Struct("<iB")


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload), kind[0]) + payload


def json_frame(kind: bytes, value: Any) -> bytes:
    return frame(kind, json.dumps(value, ensure_ascii=False).encode("utf-8"))


def token_frame(token: int, piece: bytes, eog: bool) -> bytes:
    """A `Token`'s fields, in its order."""
    return frame(TOKEN, _TOKEN.pack(token, eog) + piece)


def unpack_token(payload: bytes) -> tuple[int, bytes, bool]:
    """A `Token`'s fields, in its order."""
    token, eog = _TOKEN.unpack_from(payload)
    return token, payload[_TOKEN.size:], bool(eog)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Reader:
    """Splits the bytes read from a pipe into (kind, payload) frames."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = bytearray()

    def fill(self) -> bool:
        """One read(2), which blocks until something arrives; False at end of file."""
        data = os.read(self.fd, 1 << 16)
        self._buf += data
        return bool(data)

    def pop(self) -> tuple[bytes, bytes] | None:
        """The next whole frame received, or None."""
        buf = self._buf
        if len(buf) < _HEADER.size:
            return None
        size, kind = _HEADER.unpack_from(buf)
        end = _HEADER.size + size
        if len(buf) < end:
            return None
        payload = bytes(buf[_HEADER.size:end])
        del buf[:end]
        return bytes([kind]), payload
