"""Server-sent events, as OpenAI-compatible servers stream them: `data: {...}` lines,
events separated by blank lines, `data: [DONE]` at the end, `:` comments ignored.

Bytes in, decoded JSON payloads out. Malformed input raises `MalformedStream` rather
than passing anything odd on; lines and events are bounded so a hostile server cannot
make the client buffer without limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from chatterm import json_input

MAX_LINE = 1 << 20  # 1 MiB: far above any real event
MAX_EVENT = 4 << 20  # bytes of one event's data lines together
DONE: Any = object()  # yielded last when the server ended the stream with [DONE]


class MalformedStream(ValueError):
    pass


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if len(buffer) > MAX_LINE:
            raise MalformedStream(f"a line longer than {MAX_LINE:,} bytes")
    if buffer.strip():
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


def events(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Each event's data as parsed JSON, then DONE if the stream said [DONE]. A stream
    that just ends (a proxy or server closed the connection) has no DONE."""
    data: list[str] = []
    size = 0
    for line in _with_final_blank(lines(chunks)):  # a last event may lack its blank line
        if not line:
            if data:
                payload = "\n".join(data)
                data, size = [], 0
                if payload.strip() == "[DONE]":
                    yield DONE
                    return
                try:
                    value = json_input.loads(payload)
                except ValueError as e:
                    raise MalformedStream(f"an event that is not JSON ({str(e)[:60]}): {payload[:60]!r}") from None
                yield value
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
            size += len(value) + 1
            if size > MAX_EVENT:
                raise MalformedStream(f"an event larger than {MAX_EVENT >> 20} MiB")


def _with_final_blank(source: Iterator[str]) -> Iterator[str]:
    yield from source
    yield ""
