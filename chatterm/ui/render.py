"""Streaming Markdown to the terminal with rich, in time linear in the reply.

A reply is cut into blocks as it streams: a block ends at a blank line outside a code
fence; inside a fence every finished line is its own block. Each finished block is
printed exactly once and never redrawn. Only the open tail (the block being written)
lives in a small `rich.live.Live` region that repaints at most `FPS` times a second,
from a renderable that is built at paint time, so a token costs O(1) and the tail
never holds more than one block (taller blocks are flushed line by line).

Text reaches rich only after `sanitize.clean`, and rich never sees it as markup:
Markdown and Syntax render it literally, links show their address.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from chatterm.ui.sanitize import clean

if TYPE_CHECKING:  # rich is imported when output is styled: plain output does without it
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.markdown import Markdown
    from rich.syntax import Syntax
    from rich.text import Text

FPS = 12
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
CODE_THEME = "monokai"


@dataclass
class CodeBlock:
    language: str
    code: str


class _Tail:
    """The open block, rendered only when the Live region repaints."""

    def __init__(self, renderer: "StreamRenderer"):
        self.renderer = renderer

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.renderer
        partial = "".join(r._partial)
        if r._fence is not None:
            if partial:
                yield r._code_line(partial)
            return
        text = "\n".join([*r._block, partial]) if r._block else partial
        if text.strip():
            yield _markdown(text)


def styled(color: str, file: TextIO) -> bool:
    """The one terminal-or-plain decision: Markdown and colour on a terminal (or with
    --color always); plain text to a pipe or a file (or with --color never)."""
    return color == "always" or color != "never" and file.isatty()


def make_console(color: str = "auto", file: Any = None) -> Console:
    """chatterm's console: rich markup off (nothing printed is ever parsed as markup);
    `is_terminal` is `styled`'s answer."""
    from rich.console import Console

    return Console(file=file, markup=False, emoji=False, highlight=False,
                   force_terminal=styled(color, file or sys.stdout),
                   no_color=True if color == "never" else None)


@functools.lru_cache(maxsize=16)
def _highlighter(language: str) -> Syntax:
    """One Syntax (and pygments lexer) per language: looking a lexer up by name costs
    more than highlighting a line, and code is highlighted line by line."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
    from rich.syntax import Syntax

    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return Syntax("", lexer, theme=CODE_THEME, word_wrap=True, background_color="default")


def _markdown(text: str) -> Markdown:
    from rich.markdown import Markdown

    return Markdown(text, code_theme=CODE_THEME, hyperlinks=False)


def _rule(text: str) -> Text:
    from rich.text import Text

    return Text(text, style="dim")


class StreamRenderer:
    """feed() chunks of model text, then finish(). Markdown into `console` when it is a
    terminal (`styled`); otherwise plain text as it comes, ended with a newline, into
    the console's file, or into `file` without a console at all (no rich to import)."""

    def __init__(self, console: Console | None = None, *, file: TextIO | None = None,
                 max_block_lines: int | None = None):
        self.console = console
        self.markdown = console is not None and console.is_terminal
        self.file: TextIO = console.file if console is not None else file or sys.stdout
        self._newline = True  # plain mode: the output so far ends a line
        self.code_blocks: list[CodeBlock] = []
        self._partial: list[str] = []  # the unfinished line, as chunks
        self._block: list[str] = []  # finished lines of the open Markdown block
        self._fence: tuple[str, str] | None = None  # (marker, language) inside a code fence
        self._code: list[str] = []
        self._live: Any = None
        self._max_lines = max_block_lines or (max(4, console.size.height - 4) if console else 0)

    # ------------------------------------------------------------ input
    def feed(self, chunk: str) -> None:
        chunk = clean(chunk)
        if not self.markdown:  # plain text as it comes; lines still tracked for /copy
            if chunk:
                self.file.write(chunk)
                self.file.flush()
                self._newline = chunk.endswith("\n")
        elif self._live is None:
            self._start_live()
        *lines, rest = chunk.split("\n")
        if lines:
            lines[0] = "".join(self._partial) + lines[0]
            self._partial = []
            for line in lines:
                self._line(line)
        if rest:
            self._partial.append(rest)
        if self._live:
            now = time.monotonic()
            if now >= self._next_paint:  # at most FPS paints a second; a slow stream paints every token
                self._next_paint = now + 1 / FPS
                self._live.refresh()

    def finish(self) -> None:
        if self._partial:
            self._line("".join(self._partial))
            self._partial = []
        if self._fence is not None:
            self._close_fence()
        self._flush_block()
        self._stop_live()
        if not self._newline:
            self.file.write("\n")
            self.file.flush()
            self._newline = True

    # ------------------------------------------------------------ blocks
    def _line(self, line: str) -> None:
        fence = FENCE.match(line)
        if self._fence is not None:
            marker = self._fence[0]
            if fence and fence.group(1)[0] == marker[0] and len(fence.group(1)) >= len(marker) and not fence.group(2):
                self._close_fence()
            else:
                self._code.append(line)
                if self.markdown:
                    self._print(self._code_line(line))
            return
        if fence:
            self._flush_block()
            language = fence.group(2) or "text"
            self._fence = (fence.group(1), language)
            self._code = []
            number = len(self.code_blocks) + 1
            if self.markdown:
                self._print(_rule(f"─── [{number}] {language} "))
            return
        if not line.strip():
            self._flush_block()
            return
        self._block.append(line)
        if len(self._block) >= self._max_lines:
            self._flush_block()

    def _close_fence(self) -> None:
        assert self._fence is not None
        self.code_blocks.append(CodeBlock(self._fence[1], "\n".join(self._code)))
        self._fence = None
        self._code = []
        if self.markdown:
            self._print(_rule("───"))

    def _flush_block(self) -> None:
        if self._block:
            # Empty the tail first: printing repaints the Live region, which must not
            # show this block a second time.
            text, self._block = "\n".join(self._block), []
            if self.markdown:
                self._print(_markdown(text))

    def _code_line(self, line: str) -> Text:
        text = _highlighter(self._fence[1] if self._fence else "text").highlight(line)
        if text.plain.endswith("\n"):
            text.right_crop(1)
        return text

    # ------------------------------------------------------------ output
    def _print(self, renderable: Any) -> None:
        assert self.console is not None  # Markdown mode only
        self.console.print(renderable)

    def _start_live(self) -> None:
        if not self.console.is_terminal:
            self._live = False  # no repaintable region: finished blocks only
            return
        from rich.live import Live

        # Painted from feed(), between tokens, not by Live's own thread: on a CPU whose
        # cores all run the engine, a painting thread preempts an engine thread mid-step
        # and the others wait for it at the step's barrier.
        self._live = Live(_Tail(self), console=self.console, auto_refresh=False,
                          transient=True, vertical_overflow="crop")
        self._live.start()
        self._next_paint = 0.0

    def _stop_live(self) -> None:
        if self._live:
            self._live.stop()
        self._live = None
