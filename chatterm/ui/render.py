"""Streaming Markdown to the terminal with rich, in time linear in the reply.

A reply is cut into blocks as it streams: a block ends at a blank line outside a code
fence; inside a fence every finished line is its own block. Each finished block is
printed exactly once and never redrawn, one blank line after the block before it (as
rich spaces a whole document). Only the open tail (the block being written) lives in a
small `rich.live.Live` region that repaints at most `FPS` times a second, from a
renderable that is built at paint time, so a token costs O(1) and the tail never holds
more than one block. A block taller than the screen is printed in parts where Markdown
allows it: a paragraph or quote at any line, a list before an item; a table only whole
(until then the live region shows its top). Table cells fold their text rather than
cutting it, so nothing of a narrow table is lost, CJK text included.

A reasoning model's thinking (`Thought` chunks) is never printed for good: while it
streams, the live region shows its last lines, dim, under a "thinking… N tokens, M s"
line; when the answer starts it collapses to one summary line (`/think show` prints
it whole). Plain output leaves it out.

Text reaches rich only after `sanitize.clean`, and rich never sees it as markup:
Markdown and Syntax render it literally, links show their address.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TextIO

from chatterm.conversation.thinking import Thought
from chatterm.ui.sanitize import clean

if TYPE_CHECKING:  # rich is imported when output is styled: plain output does without it
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.markdown import Markdown
    from rich.syntax import Syntax
    from rich.text import Text

FPS = 12
THINKING_LINES = 6  # of the thinking shown while it streams
THINKING_KEPT = 4000  # characters of it kept for that view (the reply keeps it all)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")
LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])(\s|$)")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
CODE_THEME = "monokai"


@dataclass
class CodeBlock:
    language: str
    code: str


class _Tail:
    """The open block, rendered only when the Live region repaints."""

    def __init__(self, renderer: StreamRenderer):
        self.renderer = renderer

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.renderer
        if r._thinking is not None:
            yield from r._thinking.view(console, options.max_width)
            return
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


def make_console(color: str = "auto", file: Any = None, **options: Any) -> Console:
    """chatterm's console (`terminal.console`: all it prints is cleaned, nothing is
    parsed as markup); `is_terminal` is `styled`'s answer; NO_COLOR is respected
    unless --color always says otherwise. On a terminal its size is
    asked of the terminal at every paint, never taken from COLUMNS/LINES, which a
    resize does not change."""
    from chatterm.ui import terminal

    out = file or sys.stdout
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} if out.isatty() else None
    # --color always is asked for on this run: it wins over NO_COLOR (no-color.org).
    no_color = {"never": True, "always": False}.get(color)
    console = terminal.console(out, force_terminal=styled(color, out), no_color=no_color, _environ=environ,
                               **options)
    console.repaints = out.isatty()  # --color always into a pipe: styled, never repainted
    return console


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


@functools.lru_cache(maxsize=1)
def _markdown_class() -> type:
    """rich's Markdown, with tables whose cells fold long words (CJK runs have no spaces
    to wrap at) instead of cutting them with an ellipsis."""
    from rich import box
    from rich.markdown import Markdown, TableElement
    from rich.table import Table

    class FoldingTable(TableElement):
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            table = Table(box=box.SIMPLE, pad_edge=False, style="markdown.table.border", show_edge=True,
                          collapse_padding=True)
            if self.header is not None and self.header.row is not None:
                for column in self.header.row.cells:
                    heading = column.content.copy()
                    heading.stylize("markdown.table.header")
                    table.add_column(heading, overflow="fold")
            if self.body is not None:
                for row in self.body.rows:
                    table.add_row(*(cell.content for cell in row.cells))
            yield table

    class ChattermMarkdown(Markdown):
        elements = {**Markdown.elements, "table_open": FoldingTable}

        def __init__(self, markup: str, **options: Any) -> None:
            super().__init__(markup, **options)
            _html_as_text(self.parsed)

    return ChattermMarkdown


def _html_as_text(tokens: list) -> None:
    """HTML in a reply is text the model wrote, shown as written: rich drops HTML, so
    a reply opening with `<tools>` or `<python>` showed nothing. A block of it keeps
    its lines (a code block); a tag inside a line is text."""
    for token in tokens:
        if token.type == "html_block":
            token.type, token.tag, token.info = "code_block", "code", ""
        elif token.children:
            for child in token.children:
                if child.type == "html_inline":
                    child.type = "text"


def _markdown(text: str) -> Markdown:
    return _markdown_class()(text, code_theme=CODE_THEME, hyperlinks=False)


def _rule(text: str) -> Text:
    from rich.text import Text

    return Text(text, style="dim")


class _Trimmed:
    """A renderable without the blank lines rich puts above and below some blocks
    (tables, lists) and not others; `bare`: without the spaces that pad its lines to
    the width (styled output into a pipe or a file)."""

    def __init__(self, renderable: Any, bare: bool = False):
        self.renderable, self.bare = renderable, bare

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options, pad=False)
        blank = [not "".join(s.text for s in line).strip() for line in lines]
        if all(blank):
            return
        first, last = blank.index(False), len(blank) - blank[::-1].index(False)
        for line in lines[first:last]:
            if self.bare:
                while line and not line[-1].text.strip():
                    line = line[:-1]
                if line and line[-1].text != line[-1].text.rstrip():
                    line = [*line[:-1], Segment(line[-1].text.rstrip(), line[-1].style)]
            yield from line
            yield Segment.line()


class _Spaced:
    """A renderable with a blank line above it."""

    def __init__(self, renderable: Any):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        yield Segment.line()
        yield self.renderable


class _Thinking:
    """The thinking being streamed: its last characters, how many chunks, since when."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.count = 0
        self.tail = ""

    def add(self, text: str) -> None:
        self.count += 1
        self.tail += text
        if len(self.tail) > 2 * THINKING_KEPT:  # trimmed now and then: O(1) a chunk on average
            self.tail = self.tail[-THINKING_KEPT:]

    def seconds(self) -> float:
        return time.monotonic() - self.start

    def view(self, console: Console, width: int) -> RenderResult:
        from rich.text import Text

        lines = Text(self.tail.strip(), style="dim italic").wrap(console, width)
        yield from lines[-THINKING_LINES:]
        yield Text(f"thinking… {self.count} tokens, {self.seconds():.0f} s", style="dim")

    def summary(self, cut: bool) -> Text:
        from rich.text import Text

        what = "thinking cut" if cut else "thought"
        return Text(f"▸ {what} for {self.seconds():.1f} s ({self.count} tokens) · /think show", style="dim")


class StreamRenderer:
    """feed() chunks of model text, then finish(). Markdown into `console` when it is a
    terminal (`styled`); otherwise plain text as it comes, ended with a newline, into
    the console's file, or into `file` without a console at all (no rich to import)."""

    def __init__(self, console: Console | None = None, *, file: TextIO | None = None,
                 max_block_lines: int | None = None):
        self.console = console
        self.markdown = console is not None and console.is_terminal
        from chatterm.ui import terminal

        self.file: IO[str] = terminal.cleaning(console.file if console is not None else file or sys.stdout)
        self._newline = True  # plain mode: the output so far ends a line
        self.code_blocks: list[CodeBlock] = []
        self._partial: list[str] = []  # the unfinished line, as chunks
        self._block: list[str] = []  # finished lines of the open Markdown block
        self._fence: tuple[str, str] | None = None  # (marker, language) inside a code fence
        self._code: list[str] = []
        self._live: Any = None
        self._next_paint = 0.0
        self._printed = False  # a block of this reply is on the screen (the next one is spaced)
        self._continued = False  # the last block printed was a part of the open one
        self._thinking: _Thinking | None = None  # a reasoning model is thinking
        self._max_lines = max_block_lines or (max(4, console.size.height - 4) if console else 0)
        # A region to repaint needs a real terminal: --color always into a pipe gets
        # the styled blocks, printed once, without cursor codes or padding.
        self._screen = console is not None and console.is_terminal and getattr(console, "repaints", True)

    # ------------------------------------------------------------ input
    def feed(self, chunk: str) -> None:
        if isinstance(chunk, Thought):
            self._think(clean(chunk))
            return
        if self._thinking is not None:
            self._end_thinking(cut=False)
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
        self._paint()

    def _paint(self) -> None:
        if self._live:
            now = time.monotonic()
            if now >= self._next_paint:  # at most FPS paints a second; a slow stream paints every token
                self._next_paint = now + 1 / FPS
                self._live.refresh()

    def finish(self) -> None:
        if self._thinking is not None:
            self._end_thinking(cut=True)
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

    # ------------------------------------------------------------ thinking
    def _think(self, text: str) -> None:
        if not self.markdown:
            return  # plain output is the answer alone
        if self._thinking is None:
            self._thinking = _Thinking()
        self._thinking.add(text)
        if self._live is None:
            self._start_live()
        self._paint()

    def _end_thinking(self, cut: bool) -> None:
        thinking, self._thinking = self._thinking, None
        if thinking is not None and self.markdown:
            self._print(thinking.summary(cut))
            self._printed = False  # the answer follows its summary line directly

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
                self._print(_rule(f"─── [{number}] {language} "), new_block=True)
            return
        if not line.strip():
            self._flush_block()
            return
        self._block.append(line)
        if len(self._block) >= self._max_lines:
            self._flush_part()

    def _close_fence(self) -> None:
        assert self._fence is not None
        self.code_blocks.append(CodeBlock(self._fence[1], "\n".join(self._code)))
        self._fence = None
        self._code = []
        if self.markdown:
            self._print(_rule("───"))

    def _flush_block(self, part: bool = False) -> None:
        """Print the open block (`part`: the first part of a block that goes on)."""
        if self._block:
            # Empty the tail first: printing repaints the Live region, which must not
            # show this block a second time.
            text, self._block = "\n".join(self._block), []
            if self.markdown:
                self._print(_Trimmed(_markdown(text), bare=not self._screen), new_block=not self._continued)
            self._continued = part

    def _flush_part(self) -> None:
        """A block as tall as the screen: print what Markdown lets stand alone."""
        block = self._block
        if len(block) > 1 and TABLE_RULE.match(block[1]):
            return  # a table: whole or not at all
        if LIST_ITEM.match(block[0]):
            cut = next((i for i in range(len(block) - 1, 0, -1) if LIST_ITEM.match(block[i])), 0)
            if not cut:
                return  # one long item: it waits for the next one
            self._block, rest = block[:cut], block[cut:]
            self._flush_block(part=True)
            self._block = rest
            return
        self._flush_block(part=True)

    def _code_line(self, line: str) -> Text:
        text = _highlighter(self._fence[1] if self._fence else "text").highlight(line)
        if text.plain.endswith("\n"):
            text.right_crop(1)
        return text

    # ------------------------------------------------------------ output
    def _print(self, renderable: Any, new_block: bool = False) -> None:
        assert self.console is not None  # Markdown mode only
        if new_block and self._printed:  # blocks are `_Trimmed`, then spaced by one blank line
            renderable = _Spaced(renderable)  # in the same print: each print repaints the live region
        self._printed = True
        self.console.print(renderable)

    def _start_live(self) -> None:
        if not self._screen:
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
