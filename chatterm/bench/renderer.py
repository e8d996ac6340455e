"""Renderer throughput: a synthetic reply of Markdown (headings, paragraphs with inline
markup, lists, fenced code in two languages, Chinese text) fed to `StreamRenderer` in
token-sized chunks as fast as it takes them, painting into a pseudo terminal."""

from __future__ import annotations

import time

from chatterm.bench.terminal import PseudoTerminal
from chatterm.ui.render import StreamRenderer

CHARS_PER_TOKEN = 4  # English BPE averages about four characters a token

_SECTION = """## Part {i}: what the numbers say

The **first** thing to check is the *input*: a `config` value read from [the docs](https://example.org/{i})
decides how the loop below behaves, so read it before anything else runs. 中文也要正确显示，包括标点符号。

- one item with `inline code`
- another item, longer, so that it wraps on a narrow terminal window and keeps going
1. a numbered step
2. and the next one

```python
def fib(n: int) -> int:
    # the naive version, for the benchmark
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

print([fib(i) for i in range({i} % 20)])
```

> A quote that spans a line, to exercise block quotes.

```bash
for f in *.gguf; do echo "$f"; done
```

"""


def synthetic_tokens(n: int) -> list[str]:
    text: list[str] = []
    i = 0
    while sum(map(len, text)) < n * CHARS_PER_TOKEN:
        text.append(_SECTION.format(i=i))
        i += 1
    joined = "".join(text)
    return [joined[k:k + CHARS_PER_TOKEN] for k in range(0, n * CHARS_PER_TOKEN, CHARS_PER_TOKEN)]


def render_time(tokens: list[str], terminal: PseudoTerminal) -> float:
    """Seconds to render `tokens` from the first feed() to finish()."""
    renderer = StreamRenderer(terminal.console())
    start = time.perf_counter()
    for token in tokens:
        renderer.feed(token)
    renderer.finish()
    terminal.file.flush()
    return time.perf_counter() - start
