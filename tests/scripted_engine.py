"""An engine that the real engine worker loads in place of llama.cpp or ctransformers
(registered by tests/engine_plugin, which `write_script` puts on PYTHONPATH), replaying
a script (`CHATTERM_TEST_SCRIPT` names a JSON file): REPL tests go through the real isolated path (worker process,
pipe, crashes, restarts) with replies and timing they choose.

The script: {"replies": [REPLY, ...]} where REPLY is {"text": "...", "words": N (then
N words "w0001 w0002 ..." follow the text), "delay_s": per token, "crash_after": N
(the worker kills itself with "signal" after N tokens)}. Generations take the replies
in order, across worker restarts (a counter file beside the script); past the last,
a reply is "ok". Tokens are bytes (ids 0-255), 256 ends a turn.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from chatterm.engines.base import Decoding, Engine, LoadOptions, never

EOT = 256
PLUGIN = Path(__file__).resolve().parent / "engine_plugin"


def write_script(path: Path, *replies: dict | str) -> dict[str, str]:
    """A script of `replies` (a string: that text) at `path`; the environment that
    makes the worker play it."""
    path.write_text(json.dumps({"replies": [{"text": r} if isinstance(r, str) else r for r in replies]}))
    paths = [str(PLUGIN), str(PLUGIN.parents[1]), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths), "CHATTERM_TEST_SCRIPT": str(path)}


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(self, options: LoadOptions):
        self.script = Path(os.environ["CHATTERM_TEST_SCRIPT"])
        self.replies = json.loads(self.script.read_text())["replies"]
        self.n_ctx = options.n_ctx or 4096
        self.device = "CPU"
        self.notes: list[str] = []
        self.chat_template = None
        self.bos_text = self.eos_text = ""
        self.add_bos, self.bos_id = False, None

    def _next_reply(self) -> dict:
        counter = self.script.with_suffix(".count")
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        return self.replies[n] if n < len(self.replies) else {"text": "ok"}

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return b"" if token == EOT else bytes([token])

    def is_eog(self, token: int) -> bool:
        return token == EOT

    def sample(self, prompt: Sequence[int], sampling: Decoding,
               cancelled: Callable[[], bool] = never) -> Iterator[int]:
        reply = self._next_reply()
        text = reply.get("text", "") + "".join(f" w{i:04d}" for i in range(1, reply.get("words", 0) + 1))
        delay = reply.get("delay_s", 0.0)
        for count, b in enumerate(text.encode("utf-8")):
            if cancelled():
                return
            if count == reply.get("crash_after", -1):
                os.kill(os.getpid(), getattr(signal, reply.get("signal", "SIGSEGV")))
            if delay:
                time.sleep(delay)
            yield b
        yield EOT
