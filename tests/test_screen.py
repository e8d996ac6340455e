"""What a reply looks like on a real screen: the program in a pseudo terminal, its
output fed to a terminal emulator (pyte), compared line by line with the same reply
rendered whole. Markdown beyond code (tables, lists, quotes, CJK) on a narrow screen,
a reply taller than the screen, a window resized mid-reply."""

from __future__ import annotations

import io
import re
import time

import pexpect
import pyte
from rich.console import Console

from chatterm.ui.render import StreamRenderer
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import Terminal

MARKDOWN = """Here is a comparison:

| Language | Typing | 中文名 |
|---|---|---|
| Python | dynamic | 蟒蛇语言 |
| Rust | static | 铁锈语言，一种系统编程语言 |

1. First item with a long sentence that will need to wrap on a narrow terminal.
2. Second item
   - nested bullet

3. Third item after a blank line

> A block quote that is long enough to wrap across more than one line.
> 第二行是中文，用来测试中文在窄终端里的换行是否正确。

北京是中华人民共和国的首都，也是全国的政治、文化、国际交往和科技创新中心。

```python
def f(x):
    return x * 2
```

Done.
"""

TALL = ("Intro line.\n\n| n | name | 中文 |\n|---|---|---|\n"
        + "\n".join(f"| {i} | item {i} | 第{i}行 |" for i in range(1, 31))
        + "\n\n" + "\n".join(f"{i}. point number {i} of the long list" for i in range(1, 41))
        + "\n\n" + " ".join(f"word{i}" for i in range(300)) + "\n\nEnd.\n")


class Screen:
    """chatterm against a server streaming `reply` word by word, on a pyte screen."""

    def __init__(self, fake: FakeServer, rows: int, columns: int):
        self.screen = pyte.HistoryScreen(columns, rows, history=10000)
        self.stream = pyte.Stream(self.screen)
        self.child = Terminal("--base-url", fake.url, dimensions=(rows, columns), threads=False)

    def pump(self, seconds: float = 0.0, until: str | None = None) -> None:
        """Read for `seconds`, or until `until` shows (the prompt's return: "›")."""
        end = time.monotonic() + (seconds or 60)
        while time.monotonic() < end:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except pexpect.TIMEOUT:
                pass
            if until is not None and self.shows(until):
                return
        assert until is None, f"{until!r} never showed"

    def shows(self, text: str) -> bool:
        rows = self.rows()
        if text == "›":  # the prompt back after the reply
            asked = [i for i, line in enumerate(rows) if line.startswith("› q")]
            return bool(asked) and any(line.startswith("›") for line in rows[asked[-1] + 1:])
        return text in "\n".join(rows)

    def rows(self) -> list[str]:
        history = ["".join(row[x].data for x in range(self.screen.columns)).rstrip()
                   for row in self.screen.history.top]
        return history + [line.rstrip() for line in self.screen.display]

    def resize(self, rows: int, columns: int) -> None:
        self.child.setwinsize(rows, columns)
        self.screen.resize(rows, columns)

    def reply(self) -> list[str]:
        """The rows between the question and the next prompt."""
        rows = self.rows()
        start = max(i for i, line in enumerate(rows) if line.startswith("› q"))
        end = next(i for i in range(start + 1, len(rows)) if rows[i].startswith("›"))
        return rows[start + 1:end]


def whole(text: str, columns: int) -> list[str]:
    """`text` rendered at once (as a reloaded session shows it), through the same emulator."""
    out = io.StringIO()
    console = Console(file=out, width=columns, force_terminal=True, color_system="256", markup=False,
                      emoji=False, highlight=False)
    renderer = StreamRenderer(console)
    renderer.feed(text)
    renderer.finish()
    screen = pyte.Screen(columns, 500)
    pyte.Stream(screen).feed(out.getvalue().replace("\n", "\r\n"))
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def streamed(text: str, rows: int, columns: int, resize_at: str | None = None,
             resize_to: tuple[int, int] | None = None) -> tuple[Screen, list[str]]:
    words = re.findall(r"\s*\S+|\s+", text)
    with FakeServer([event(w) for w in words] + [DONE], delay_s=0.01) as fake:
        screen = Screen(fake, rows, columns)
        screen.pump(until="/help for commands")
        screen.child.sendline("q")
        if resize_at:
            screen.pump(until=resize_at)
            screen.resize(*resize_to)
        screen.pump(until="›")
        screen.pump(0.3)
        reply = screen.reply()
        screen.child.sendline("/exit")
        screen.child.expect(pexpect.EOF)
    return screen, reply


def test_markdown_streamed_on_a_narrow_screen_is_the_whole_render():
    _, reply = streamed(MARKDOWN, 24, 40)
    assert reply == whole(MARKDOWN, 40)
    text = "\n".join(reply)
    assert "编程语言" in text  # a table cell folds, it is not cut with an ellipsis
    assert "▌ 第二行是中文，用来测试中文在窄终端里" in text and " 3 Third item" in text


def test_a_reply_taller_than_the_screen_loses_and_repeats_nothing():
    _, reply = streamed(TALL, 24, 40)
    assert reply == whole(TALL, 40)
    text = "\n".join(reply)
    for i in range(1, 31):
        assert text.count(f" item {i} ") == 1
    for i in range(1, 41):
        assert text.count(f"point number {i} of") == 1


def test_a_resize_mid_reply_repeats_nothing_and_the_rest_fits_the_new_width():
    _, reply = streamed(TALL, 24, 60, resize_at="point number 10 of", resize_to=(24, 40))
    text = "\n".join(reply)
    for i in range(1, 41):
        assert text.count(f"point number {i} of") == 1, i
    words = re.findall(r"word\d+", text)
    assert words == [f"word{i}" for i in range(300)]  # every word once, in order
    paragraph = [line for line in reply if "word" in line]
    assert paragraph and all(len(line) <= 40 for line in paragraph)  # printed after the resize
