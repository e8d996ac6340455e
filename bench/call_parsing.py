"""Time to read a long tool call streamed in small pieces, in each syntax, against the
same size of plain text: the parser's cost per piece stays constant (issue 39: it was
quadratic, 15 s fenced and 90 s tagged for 1 MiB on a 2-core Xeon).

    python bench/call_parsing.py [MIB] [PIECE]
"""

from __future__ import annotations

import json
import sys
import time

from chatterm.tools.markup import HERMES, CallParser


def main(mib: float = 1.0, piece: int = 4) -> None:
    code = "x = 1\n" * int(mib * (1 << 20) / 6)
    call = json.dumps({"name": "python", "arguments": {"code": code}})
    for label, text in (("fenced", f"```json\n{call}\n```"), ("tagged", f"<tool_call>\n{call}\n</tool_call>"),
                        ("text", code)):
        parser = CallParser(HERMES, ["python"])
        start = time.perf_counter()
        for at in range(0, len(text), piece):
            parser.feed(text[at:at + piece])
        parser.finish()
        seconds = time.perf_counter() - start
        print(f"{label:<7} {len(text) / 2**20:5.2f} MiB in {piece}-character pieces: {seconds:6.2f} s")


if __name__ == "__main__":
    main(*(float(a) if i == 0 else int(a) for i, a in enumerate(sys.argv[1:3])))  # type: ignore[arg-type]
