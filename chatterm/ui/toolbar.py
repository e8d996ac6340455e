"""The line under the prompt: model, engine, device, how full the context window is,
the last reply's speed, the files going with the next message, and why the text in
the input was not sent. It never waits and never fails: what it shows is counted on
a thread of its own (a slow tokenizer or chat template never holds up a key), and a
toolbar that cannot be drawn shows the model's name alone."""

from __future__ import annotations

import concurrent.futures
from typing import Protocol

from prompt_toolkit.formatted_text import StyleAndTextTuples

from chatterm.attachments import Attachment
from chatterm.conversation import Conversation
from chatterm.conversation.model import Model


class Shown(Protocol):
    """What the toolbar reads (the REPL is one): the model, the conversation and the
    files going with the next message, as they are now."""

    loaded: Model
    conversation: Conversation
    attached: list[Attachment]

    def attached_tokens(self) -> int: ...


class Toolbar:
    def __init__(self, chat: Shown):
        """`chat`: where the model, the conversation and the attached files are now."""
        self.chat = chat
        self.refused = ""  # why the text in the input was not sent ("" when it was)
        self._counting: concurrent.futures.Future | None = None
        self._counter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chatterm-count")

    def __call__(self) -> StyleAndTextTuples:
        try:
            return [("class:bottom-toolbar", self._text())]
        except Exception as e:
            return [("class:bottom-toolbar", f" {self.chat.loaded.name} · (toolbar: {type(e).__name__}) ")]

    def _text(self) -> str:
        chat = self.chat
        conversation, model, attached = chat.conversation, chat.loaded, chat.attached
        reply = conversation.last
        state = model.state()  # never waits: the model may still be loading
        used = conversation.measured
        if state == "ready":
            total = model.n_ctx
            where = (f"{model.device} · ctx {used:,}/{total:,} ({100 * used // max(total, 1)}%)" if used is not None
                     else f"{model.device} · ctx …/{total:,}")
        else:
            where = "no model: /model NAME" if state == "failed" else "loading the model…"
        speed = f" · {reply.tokens_per_s:.1f} tok/s" if reply is not None and reply.tokens_per_s else ""
        files = ""
        if attached:
            counted = state == "ready" and all(f.tokens is not None for f in attached)
            cost = sum(f.tokens or 0 for f in attached) if counted else None
            files = f" · +{len(attached)} file{'s' if len(attached) > 1 else ''}" + (
                f" ({cost:,} tokens)" if cost is not None else "")  # /file tells what they leave
        refused = f"\n {self.refused} " if self.refused else ""
        on = [a.text for a in model.adapters if a.scale]
        lora = f" + lora {', '.join(on)}" if on else ""
        return f" {model.name}{lora} · {model.engine_name} · {where}{speed}{files} {refused}"

    def count(self) -> concurrent.futures.Future:
        """Count what the toolbar shows (tokens in the window, the attached files'
        cost) on the counting thread, once per input."""
        if self._counting is None:
            self._counting = self._counter.submit(self._count)
        return self._counting

    def _count(self) -> None:
        self.chat.conversation.measure()
        self.chat.attached_tokens()

    def settle(self) -> None:
        """The input is in: the count (if still running) ends before anything else
        uses the engine; its failure is the toolbar's, not this input's."""
        counting, self._counting = self._counting, None
        if counting is not None:
            try:
                counting.result()
            except Exception:
                pass  # said by whatever uses the engine next

    def close(self) -> None:
        self._counter.shutdown(wait=True, cancel_futures=True)
