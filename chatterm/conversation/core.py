"""The conversation: its messages, its sampling, the last reply, and every operation
on them (send, continue, retry, undo, system prompt, settings), whatever backend
answers. Front ends (the one-shot command, the REPL and its slash commands) change a
conversation only through these operations; each change reaches `on_change`, the
persistence hook the REPL saves the session with.

Nothing said is lost: a question is recorded before its reply starts, a reply is
recorded however it ends (cut or failed replies are marked by their `finish`), and
`retry` keeps the old reply until a new one exists.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from chatterm.conversation import context_window
from chatterm.conversation.backend import Backend
from chatterm.conversation.reply import Finish, Reply
from chatterm.engines.base import never
from chatterm.errors import ChattermError
from chatterm.settings import SETTINGS, Sampling


class Conversation:
    def __init__(self, backend: Backend, defaults: Sampling, system: str | None = None,
                 overrides: dict[str, Any] | None = None):
        """`defaults`: the model's sampling (its models.toml entry); `overrides`: what
        the user chose (options, `/set`), kept across models and saved with the session."""
        self.backend = backend
        self.defaults = defaults
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []
        self.last: Reply | None = None
        self.dropped = 0  # oldest messages left out of the last prompt to fit the window
        self.on_change: Callable[[], None] = lambda: None
        self._used: int | None = None  # tokens in the window; None: to be measured

    # ------------------------------------------------------------ state
    @property
    def engine(self) -> Any:
        return self.backend.engine

    @property
    def sampling(self) -> Sampling:
        return self.defaults.updated(**self.overrides)

    @property
    def system(self) -> str | None:
        first = self.messages[0] if self.messages else None
        return first["content"] if first and first["role"] == "system" else None

    @property
    def last_message(self) -> dict | None:
        return self.messages[-1] if self.messages else None

    def ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait for the model to load (see `Engine.wait_ready`)."""
        return bool(self.engine.wait_ready(cancelled))

    @property
    def context_used(self) -> int | None:
        return self.measure()

    def measure(self) -> int | None:
        """Tokens the conversation fills in the context window (None until the model
        has loaded). Measured again after changes other than a reply, when first asked."""
        if self._used is None and self.engine.state() == "ready":
            try:
                (self._used, _), _ = self._fit(self.messages, None)
            except ChattermError:
                self._used = self.backend.n_ctx
        return self._used

    # ------------------------------------------------------------ replies
    def send(self, text: str, cancelled: Callable[[], bool] = never) -> Iterator[str]:
        """Stream the reply to a new user message; both join `messages`."""
        self.messages.append({"role": "user", "content": text})
        try:
            prompt = self._prompt(self.messages, None)
        except BaseException:
            self.messages.pop()
            raise
        self.on_change()  # the question is on disk before the reply starts
        yield from self._reply(prompt, cancelled, self._append)

    def continue_reply(self, cancelled: Callable[[], bool] = never) -> Iterator[str]:
        """Continue the last reply from where it stopped."""
        last = self._last_reply("there is no reply to continue")
        prompt = self._prompt(self.messages[:-1], last["content"])

        def extend(reply: Reply) -> None:
            last["content"] += reply.text
            last["finish"] = _stored(reply.finish)
        yield from self._reply(prompt, cancelled, extend)

    def retry(self, cancelled: Callable[[], bool] = never) -> Iterator[str]:
        """Answer the last question again; the new reply replaces the old one once it
        has any text (a retry that fails or is stopped at once keeps the old one)."""
        old = self._last_reply("there is no reply to retry")
        prompt = self._prompt(self.messages[:-1], None)

        def replace(reply: Reply) -> None:
            if (reply.text or reply.finish not in (Finish.ERROR, Finish.CANCELLED)) and self.messages[-1] is old:
                self.messages[-1] = _message(reply)
        yield from self._reply(prompt, cancelled, replace)

    def _last_reply(self, none: str) -> dict:
        last = self.last_message
        if not last or last["role"] != "assistant":
            raise ChattermError(none)
        return last

    def _append(self, reply: Reply) -> None:
        self.messages.append(_message(reply))

    def _prompt(self, messages: list[dict], tail: str | None) -> Any:
        """The backend's prompt for a reply to `messages` (see `_fit`)."""
        (_, prompt), self.dropped = self._fit(messages, tail)
        return prompt

    def _fit(self, messages: list[dict], tail: str | None) -> tuple[tuple[int, Any], int]:
        """((size, prompt) of the newest messages that fit with room for a reply,
        how many older ones were left out)."""
        backend = self.backend

        def measure(kept: list[dict]) -> tuple[int, tuple[int, Any]]:
            size, prompt = backend.measure(kept, tail)
            return size, (size, prompt)

        n_ctx = backend.n_ctx
        return context_window.fit(messages, measure, n_ctx,
                                  context_window.reply_reserve(n_ctx, self.sampling.max_tokens),
                                  size_note=backend.size_note)

    def _reply(self, prompt: Any, cancelled: Callable[[], bool], record: Callable[[Reply], None]) -> Iterator[str]:
        reply = self.backend.reply(prompt, self.sampling, cancelled)
        self.last = reply
        try:
            yield from reply
        finally:
            # However it ended, what was generated is recorded (a cut reply is marked).
            if reply.finish is None:  # the consumer stopped iterating
                reply.finish = Finish.CANCELLED
            self._used = self.backend.settle(prompt, reply)
            record(reply)
            self.on_change()

    # ------------------------------------------------------------ edits
    def undo(self) -> None:
        """Remove the last question and its reply."""
        messages = self.messages
        end = len(messages) - (1 if messages and messages[-1]["role"] == "assistant" else 0)
        if not end or messages[end - 1]["role"] != "user":
            raise ChattermError("nothing to undo")
        del messages[end - 1:]
        self._remeasure()
        self.on_change()

    def set_system(self, text: str) -> None:
        if self.system is not None:
            self.messages[0]["content"] = text
        else:
            self.messages.insert(0, {"role": "system", "content": text})
        self._remeasure()
        self.on_change()

    def set_sampling(self, name: str, value: Any) -> None:
        """`value` None: back to the model's default."""
        if name not in SETTINGS:
            raise ChattermError(f"unknown setting {name!r} ({', '.join(SETTINGS)})")
        if value is None:
            self.overrides.pop(name, None)
        else:
            self.overrides[name] = SETTINGS[name].check(value)
        self.on_change()

    def replace_messages(self, messages: list[dict]) -> None:
        """Another conversation in this one's place (/new, /load); saved from its
        first turn on, like any new one."""
        self.messages = messages
        self.last = None
        self.dropped = 0
        self._remeasure()

    def switch(self, backend: Backend, defaults: Sampling) -> None:
        """Another model answers from now on; messages and the user's settings stay."""
        self.backend, self.defaults = backend, defaults
        self.last = None
        self._remeasure()

    def _remeasure(self) -> None:
        self._used = None


def _stored(finish: Finish | None) -> str | None:
    return finish.value if finish is not None else None


def _message(reply: Reply) -> dict:
    return {"role": "assistant", "content": reply.text, "finish": _stored(reply.finish)}
