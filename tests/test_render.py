"""The streaming renderer on a forced terminal: what a person would see."""

from __future__ import annotations

import io

import pyte
import pytest
from rich.console import Console

from chatterm.ui.render import StreamRenderer
from chatterm.ui.sanitize import clean


def terminal_console(width=80, height=24):
    return Console(file=io.StringIO(), force_terminal=True, width=width, height=height,
                   color_system="truecolor", markup=False, emoji=False, highlight=False)


def stream(text: str, console, step=3, **kw) -> StreamRenderer:
    r = StreamRenderer(console, **kw)
    for i in range(0, len(text), step):  # tokens of a few characters, fences split too
        r.feed(text[i:i + step])
    r.finish()
    return r


def screen_lines(raw: str, width=80, height=24) -> list[str]:
    """Everything a terminal shows, scrolled-off history included."""
    screen = pyte.HistoryScreen(width, height, history=100_000)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n"))
    history = ["".join(ch.data for ch in line.values()).rstrip() if isinstance(line, dict)
               else "".join(line[x].data for x in range(width)).rstrip() for line in screen.history.top]
    return [line for line in history + [row.rstrip() for row in screen.display]]


REPLY = "\n".join(
    [f"Paragraph {i}: the quick brown fox jumps over the lazy dog, again and again." + "\n"
     for i in range(40)]
    + ["```python", *[f"value_{i} = {i} * 2  # line {i}" for i in range(60)], "```", "",
       "Done: 你好世界，这是中文。 👍"])


def test_long_reply_every_line_once_nothing_missing():
    console = terminal_console()
    r = stream(REPLY, console)
    lines = screen_lines(console.file.getvalue())
    text = "\n".join(lines)
    for i in range(40):
        assert sum(f"Paragraph {i}:" in line for line in lines) == 1, i
    for i in range(60):
        assert sum(f"value_{i} = {i} * 2" in line for line in lines) == 1, i
    assert "你好世界" in text
    assert [b.language for b in r.code_blocks] == ["python"]
    assert r.code_blocks[0].code.splitlines()[5] == "value_5 = 5 * 2  # line 5"
    assert "[1] python" in text


def test_code_blocks_are_numbered():
    console = terminal_console()
    r = stream("a\n```sh\nls\n```\nb\n~~~js\nx()\n~~~\n", console)
    text = "\n".join(screen_lines(console.file.getvalue()))
    assert "[1] sh" in text and "[2] js" in text
    assert [b.code for b in r.code_blocks] == ["ls", "x()"]


def test_unclosed_fence_is_still_a_block():
    r = stream("```py\nprint(1)\n", terminal_console())
    assert r.code_blocks[0].code == "print(1)"


PAYLOADS = {
    "osc52": "\x1b]52;c;ZWNobyBwd25lZA==\x07", "osc0": "\x1b]0;pwned title\x07",
    "osc8": "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "csi_clear": "\x1b[2J\x1b[H",
    "csi_up": "\x1b[1A\x1b[2K", "c1_csi": "\x9b2J", "c1_osc": "\x9d0;x\x9c", "bel": "\x07",
    "bs": "abc\x08\x08\x08XYZ", "cr": "visible\rHIDDEN",
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("where", ["text", "code"])
def test_escape_payloads_never_reach_the_terminal(name, where):
    payload = PAYLOADS[name]
    text = f"Before {payload} after\n" if where == "text" else f"```\n{payload}\n```\n"
    console = terminal_console()
    stream(text, console, step=1)
    raw = console.file.getvalue()
    # (rich's Live region moves the cursor with its own CSI sequences; none of the
    # payload's may appear, and its text must be on screen, inert)
    for bad in ("\x1b]", "\x1b[2J", "\x1b[H", "\x07", "\x08", "\x9b", "\x9d", "\x9c", "\rHIDDEN"):
        assert bad not in raw, (name, bad)
    shown = "\n".join(screen_lines(raw))
    if where == "text":
        assert "Before" in shown and "after" in shown
    else:  # a code line is shown as written, its controls made visible
        assert clean(payload) in shown
    if "\x1b" in payload:
        assert "␛" in shown
    if name == "cr":
        assert "visible" in shown and "HIDDEN" in shown


def test_rich_markup_and_links_are_literal():
    console = terminal_console()
    stream("[bold red]not markup[/bold red] and [link=http://x]y[/link] and [site](http://evil.example/a)\n", console)
    raw = console.file.getvalue()
    text = "\n".join(screen_lines(raw))
    assert "[bold red]not markup[/bold red]" in text
    assert "http://evil.example/a" in text  # a link shows its address
    assert "\x1b]8;" not in raw  # and is never a terminal hyperlink


def test_plain_mode_prints_text_as_it_comes():
    out = io.StringIO()
    stream("# Title\n\x1b[2Jsome *text*\n", Console(file=out, force_terminal=False))  # a pipe
    assert out.getvalue() == "# Title\n␛[2Jsome *text*\n"
    bare = io.StringIO()  # no console at all (the one-shot answer to a pipe)
    r = StreamRenderer(file=bare)
    for chunk in ("```py\nprint(1)\n", "```\nno newline at the end"):
        r.feed(chunk)
    r.finish()
    assert bare.getvalue() == "```py\nprint(1)\n```\nno newline at the end\n"
    assert r.code_blocks[0].code == "print(1)"  # /copy works on plain output too


def test_narrow_terminal_and_wide_characters():
    console = terminal_console(width=20)
    stream("这是一个很长的中文句子，用来测试窄终端的换行是否正确。\n", console)
    lines = screen_lines(console.file.getvalue(), width=20)
    joined = "".join(line.replace(" ", "") for line in lines)
    assert "这是一个很长的中文句子，用来测试窄终端的换行是否正确。" in joined


def test_cost_per_token_does_not_grow_with_reply_length():
    import time

    def seconds(n_lines: int) -> float:
        text = "\n".join(f"word {i} " * 8 + ("\n" if i % 4 == 3 else "") for i in range(n_lines))
        r = StreamRenderer(terminal_console())
        t = time.perf_counter()
        for i in range(0, len(text), 4):
            r.feed(text[i:i + 4])
        r.finish()
        return time.perf_counter() - t
    small, large = seconds(100), seconds(1600)
    assert large / small < 16 * 2.5  # linear, with slack for noise (quadratic would be ~256x)


def test_the_open_line_shows_while_it_streams_without_a_paint_thread(monkeypatch):
    import threading
    import types

    from chatterm.ui import render

    clock = iter(range(10**6))  # a second a call: every token comes a frame after the last
    monkeypatch.setattr(render, "time", types.SimpleNamespace(monotonic=lambda: float(next(clock))))
    console = terminal_console()
    before = threading.active_count()
    r = StreamRenderer(console)
    r.feed("Hello, ")
    r.feed("streaming world")
    shown = console.file.getvalue()
    assert "streaming world" in shown  # visible before the line (or reply) ends
    assert threading.active_count() == before  # painted from feed(), no refresh thread
    r.finish()
    assert screen_lines(console.file.getvalue())[:1] == ["Hello, streaming world"]


@pytest.mark.parametrize("reply, seen", [
    ("<tools>\n{\"name\": \"x\"}\n</tools>", ["<tools>", '{"name": "x"}', "</tools>"]),
    ("<python>\ndef f(x):\n    return x + 1\n</python>\n\nThat is all.",
     ["<python>", "def f(x):", "    return x + 1", "</python>", "That is all."]),
    ("Use <b>bold</b> and <br> here.", ["Use <b>bold</b> and <br> here."]),
])
def test_html_a_model_writes_is_shown_as_written(reply, seen):
    """rich drops HTML blocks: a reply that opened with `<tools>` showed nothing."""
    console = terminal_console()
    stream(reply, console)
    shown = [line.strip() for line in screen_lines(console.file.getvalue())]
    for line in seen:
        assert line.strip() in shown, (line, shown)
    assert any("    return x + 1" in raw for raw in screen_lines(console.file.getvalue())) or "def" not in reply
