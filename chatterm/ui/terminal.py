"""The one way to the terminal: everything chatterm writes to stdout or stderr passes
`sanitize.clean` on its way out, whoever wrote it.

`install()` (run by the `chatterm` command before anything else) puts a `CleanStream`
in place of `sys.stdout` and `sys.stderr`, so `print`, `click.echo` and any other
writer are cleaned. The terminal codes chatterm makes itself (rich's styling and live
region, prompt_toolkit's screen, the OSC 52 of /copy) go to the raw stream beneath,
reached only here: a rich console made by `console()` cleans the text of every
segment it renders, keeping its own control segments; `prompt_output()` is
prompt_toolkit's, which shows control characters as ^X itself; `control()` writes a
sequence chatterm composed.
"""

from __future__ import annotations

import functools
import io
import sys
from typing import IO, Any, TextIO, cast

from chatterm.ui.sanitize import clean


class CleanStream(io.TextIOBase):
    """A text stream that writes `clean(text)` to the stream beneath it."""

    def __init__(self, raw: IO[str]):
        self._raw = raw

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._raw.write(clean(text))
        return len(text)

    def flush(self) -> None:
        self._raw.flush()

    def isatty(self) -> bool:
        return self._raw.isatty()

    def fileno(self) -> int:
        return self._raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._raw, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._raw, "errors", None)


def install() -> None:
    """Clean everything written to sys.stdout and sys.stderr from now on."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, CleanStream):
            setattr(sys, name, CleanStream(stream))


def raw(stream: IO[str] | None) -> IO[str]:
    """The stream beneath a CleanStream (any other stream as it is)."""
    stream = stream if stream is not None else sys.stdout
    return stream._raw if isinstance(stream, CleanStream) else stream


def cleaning(stream: IO[str]) -> IO[str]:
    """`stream`, cleaned (a CleanStream as it is)."""
    return stream if isinstance(stream, CleanStream) else cast(IO[str], CleanStream(stream))


def console(file: IO[str] | None = None, **options: Any) -> Any:
    """A rich Console on `file` (sys.stdout by default) that cleans all it renders;
    rich markup, emoji codes and highlighting are off: nothing printed is parsed."""
    defaults = {"markup": False, "emoji": False, "highlight": False}
    return _safe_console()(file=raw(file if file is not None else sys.stdout), **{**defaults, **options})


@functools.lru_cache(maxsize=1)
def _safe_console() -> type:
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """Every byte rich writes comes from `_render_buffer`: text segments are
        cleaned there, after all rendering; control segments are rich's own."""

        def _render_buffer(self, buffer: Any) -> str:
            return super()._render_buffer(s if s.control or (text := clean(s.text)) is s.text
                                          else Segment(text, s.style) for s in buffer)

    return SafeConsole


def prompt_output(stream: IO[str] | None = None) -> Any:
    """prompt_toolkit's output on the terminal beneath `stream` (sys.stdout)."""
    from prompt_toolkit.output import create_output

    return create_output(stdout=cast(TextIO, raw(stream)))


def control(sequence: str, stream: IO[str] | None = None) -> None:
    """A terminal sequence chatterm composed itself (never one containing outside text
    that is not encoded, as OSC 52's base64 is)."""
    out = raw(stream)
    out.write(sequence)
    out.flush()
