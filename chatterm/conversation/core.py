"""The conversation: its messages, its sampling, the last reply, and every operation
on them (send, continue, retry, undo, system prompt, settings), whatever backend
answers. Front ends (the one-shot command, the REPL and its slash commands) change a
conversation only through these operations; each change reaches `on_change`, the
persistence hook the REPL saves the session with.

Nothing said is lost: a question is recorded before its reply starts, a reply is
recorded however it ends (cut or failed replies are marked by their `finish`), and
`retry` and `edit` keep what they replace as alternatives (`branches`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from chatterm.conversation import branches, context_window
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

    @property
    def think_ignored(self) -> bool:
        """The user chose thinking on or off, and this model has no switch for it."""
        return self.sampling.think is not None and not self.backend.think_switch

    def ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait for the model to load (see `Engine.wait_ready`)."""
        return bool(self.engine.wait_ready(cancelled))

    @property
    def measured(self) -> int | None:
        """The tokens `measure` last found, without measuring (None: not yet)."""
        return self._used

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
            if reply.thinking:
                last["thinking"] = last.get("thinking", "") + reply.thinking
            last["finish"] = _stored(reply.finish)
        yield from self._reply(prompt, cancelled, extend)

    def retry(self, cancelled: Callable[[], bool] = never) -> Iterator[str]:
        """Answer the last question again; the new reply becomes the current alternative
        once it has any text (a retry that fails or is stopped at once adds nothing; an
        empty failed reply is replaced, not kept)."""
        old = self._last_reply("there is no reply to retry")
        prompt = self._prompt(self.messages[:-1], None)

        def add(reply: Reply) -> None:
            if not (reply.text or reply.finish not in (Finish.ERROR, Finish.CANCELLED)) or self.messages[-1] is not old:
                return
            if old["content"]:
                branches.add_version(self.messages, len(self.messages) - 1, _message(reply))
            else:  # a reply that failed before its first word is not worth keeping
                self.messages[-1] = {**_message(reply), **{k: old[k] for k in branches.TREE_KEYS if k in old}}
        # A fixed seed would give the same reply again: each alternative gets its own
        # (seed + alternatives so far), so a session still replays the same.
        sampling = self.sampling
        if sampling.seed is not None:
            sampling = sampling.updated(seed=(sampling.seed + len(old.get("alternatives") or []) + 1) % 2**31)
        yield from self._reply(prompt, cancelled, add, sampling)

    def edit(self, question: int, text: str, cancelled: Callable[[], bool] = never) -> Iterator[str]:
        """Ask question number `question` (from 1) again as `text` and stream the reply:
        a new branch; the old question and all that followed it stay an alternative."""
        messages = self.messages
        i = branches.index_of(messages, "user", question)
        if i is None:
            raise ChattermError(f"no question {question}: this conversation has "
                                f"{branches.count(messages, 'user')}")
        before = messages[i:]
        branches.add_version(messages, i, {"role": "user", "content": text})
        try:
            prompt = self._prompt(messages, None)
        except BaseException:
            messages[i:] = before
            raise
        self.on_change()
        yield from self._reply(prompt, cancelled, self._append)

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
            size, prompt = backend.measure(kept, tail, self.sampling.think)
            return size, (size, prompt)

        n_ctx = backend.n_ctx
        return context_window.fit(messages, measure, n_ctx,
                                  context_window.reply_reserve(n_ctx, self.sampling.max_tokens),
                                  size_note=backend.size_note)

    def _reply(self, prompt: Any, cancelled: Callable[[], bool], record: Callable[[Reply], None],
               sampling: Sampling | None = None) -> Iterator[str]:
        try:
            reply = self.backend.reply(prompt, sampling or self.sampling, cancelled)
        except ChattermError:
            # No reply could start: the question stays, with an empty failed reply
            # (what /retry replaces), rather than twice or not at all.
            failed = Reply(0)
            failed.finish = Finish.ERROR
            record(failed)
            self.on_change()
            raise
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

    # ------------------------------------------------------------ alternatives, ratings
    def fork(self, role: str | None = None, number: int | None = None) -> int:
        """Index of the message `/alt` switches: message `number` of `role` ("user" or
        "assistant"); by default the last reply, or the last question when only it has
        other versions (an edited question)."""
        messages = self.messages
        if role is not None and number is not None:
            i = branches.index_of(messages, role, number)
            if i is None:
                raise ChattermError(f"no {_NOUNS[role]} {number}: this conversation has {branches.count(messages, role)}")
            if not messages[i].get("alternatives"):
                raise ChattermError(f"{_NOUNS[role]} {number} has no alternatives")
            return i
        last_user = branches.index_of(messages, "user", branches.count(messages, "user"))
        for i in range(len(messages) - 1, (last_user if last_user is not None else 0) - 1, -1):
            if messages[i].get("alternatives"):
                return i
        earlier = [branches.position(messages, i) for i in range(len(messages)) if messages[i].get("alternatives")]
        raise ChattermError("the last reply has no alternatives: /retry makes one"
                            + (f"; earlier: {', '.join(f'/alt {e}' for e in earlier)}" if earlier else ""))

    def choose(self, i: int, number: int) -> None:
        """Version `number` (from 1) of message `i` becomes current, and the conversation
        goes on from it."""
        every = branches.versions(self.messages, i)
        if not 1 <= number <= len(every):
            raise ChattermError(f"no alternative {number}: there are {len(every)}")
        branches.choose(self.messages, i, every, number)
        self._remeasure()
        self.on_change()

    def rate(self, reply: int | None, rating: str | None, note: str = "") -> int:
        """Rate reply number `reply` (None: the last) 'good' or 'bad' with an optional
        note, replacing any earlier rating; None removes it. Returns the reply's number."""
        messages = self.messages
        replies = branches.count(messages, "assistant")
        number = replies if reply is None else reply
        i = branches.index_of(messages, "assistant", number) if number > 0 else None
        if i is None:
            raise ChattermError("there is no reply to rate yet" if not replies
                                else f"no reply {number}: this conversation has {replies}")
        message = messages[i]
        for key in ("rating", "note"):
            message.pop(key, None)
        if rating is not None:
            message["rating"] = rating
            if note:
                message["note"] = note
        self.on_change()
        return number

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

    def switch(self, model: Any) -> None:
        """Another model (`loader.Model`) answers from now on; messages and the user's
        settings stay."""
        self.backend, self.defaults = model.backend, model.defaults
        self.last = None
        self._remeasure()

    def _remeasure(self) -> None:
        self._used = None


_NOUNS = {"user": "question", "assistant": "reply"}


def _stored(finish: Finish | None) -> str | None:
    return finish.value if finish is not None else None


def _message(reply: Reply) -> dict:
    """A reply as the session keeps it: the answer, its finish, and any thinking apart
    (never sent back to the model: `backend.wire` takes the answer only)."""
    message = {"role": "assistant", "content": reply.text, "finish": _stored(reply.finish)}
    if reply.thinking:
        message["thinking"] = reply.thinking
    return message
