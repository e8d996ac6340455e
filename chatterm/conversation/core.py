"""The conversation: its session (messages, the user's settings, the model that
answers), its sampling, the last reply, and every operation on them (send, continue,
retry, edit, undo, system prompt, settings), whatever backend answers. Front ends (the
one-shot command, the REPL and its slash commands) change a conversation only through
these operations; each change updates the session and reaches `on_change`, the
persistence hook (the REPL saves the session there, copying nothing).

Nothing said is lost: a question is recorded before its reply starts, a reply is
recorded however it ends (cut or failed replies are marked by their `finish`), and
`retry` and `edit` keep what they replace as alternatives (`branches`). Replies are
`Turn`s: iterated for their events, then telling what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from chatterm import branches
from chatterm.conversation import compaction, context_window
from chatterm.conversation.backend import Runner
from chatterm.conversation.reply import Finish, Reply
from chatterm.conversation.turn import Notice, Turn
from chatterm.engines.base import never
from chatterm.errors import ChattermError
from chatterm.records import YES, Event, Message
from chatterm.sessions import Session
from chatterm.settings import SETTINGS, Decoding, Sampling
from chatterm.tools.calls import ToolCall
from chatterm.tools.intent import (
    FAKE_RESULT,
    FAKED,
    WRITTEN,
    Repeats,
    call_shape,
    example_prints,
    last_code_block,
    written_as_text,
)

if TYPE_CHECKING:
    from chatterm.conversation.model import Model
    from chatterm.conversation.verify import Checking
    from chatterm.sessions import Session
    from chatterm.tools.toolbox import Toolbox


class Conversation:
    def __init__(self, model: Model, session: Session | None = None, *, system: str | None = None,
                 overrides: dict[str, Any] | None = None, defaults: Sampling | None = None):
        """`model`: the handle of the model that answers (`conversation.model.Model`); `session`:
        what the conversation is (a new one in memory by default), kept up to date by
        every operation; `system`: the system prompt of a conversation that has no
        messages yet; `overrides`: settings the user chose now, over the session's;
        `defaults`: the sampling under them (the model's, from its entry)."""
        if session is None:

            session = Session(name="")
        self.session = session
        if not session.messages and system:
            session.messages = [{"role": "system", "content": system}]
        session.sampling = {**session.sampling, **(overrides or {})}
        self.last: Reply | None = None
        self.dropped = 0  # oldest messages left out of the last prompt to fit the window
        self.on_change: Callable[[], None] = lambda: None
        self.toolbox: Toolbox | None = None  # the tools the model may call (None: off)
        self.schema: dict | None = None  # replies are JSON matching this JSON Schema (--schema, /schema)
        self.checking: Checking | None = None  # code answers checked on the question's examples (None: off)
        self._used: int | None = None  # tokens in the window; None: to be measured
        self._use(model, defaults)

    # ------------------------------------------------------------ state
    @property
    def messages(self) -> list[dict]:
        return self.session.messages

    @property
    def overrides(self) -> dict[str, Any]:
        """What the user chose (options, `/set`), kept across models and saved with the session."""
        return self.session.sampling

    @overrides.setter
    def overrides(self, value: dict[str, Any]) -> None:
        self.session.sampling = dict(value)

    @property
    def engine(self) -> Runner:
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

    def records(self) -> list[Message]:
        """The messages on the current path as records: what front ends read."""
        return [Message.of(m) for m in self.messages]

    def record(self, i: int) -> Message:
        """Message `i` (negative: from the end) as a record."""
        return Message.of(self.messages[i])

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
                # Some templates cannot render a conversation of no message (Qwen's): that
                # one fills nothing; any other that fails fills the window.
                self._used = self.backend.n_ctx if self.messages else 0
        return self._used

    def _changed(self) -> None:
        """Every change ends here: the session says which model answers (a crash can
        switch engines), and the persistence hook runs."""
        self._name_model()
        self.on_change()

    def _name_model(self) -> None:
        self.session.model, self.session.engine = self.model.reference, self.model.engine_name

    # ------------------------------------------------------------ replies
    def send(self, text: str, cancelled: Callable[[], bool] = never) -> Turn:
        """A new user message and the reply to it (both join `messages` once the
        turn is iterated)."""
        def ask(turn: Turn) -> Any:
            self.messages.append({"role": "user", "content": text})
            try:
                prompt = self._prompt(self.messages, None, turn)
            except BaseException:
                self.messages.pop()
                raise
            self._recorded(turn)
            return prompt
        return Turn(lambda turn: self._reply(turn, ask, self._append), cancelled)

    def continue_reply(self, cancelled: Callable[[], bool] = never) -> Turn:
        """Continue the last reply from where it stopped."""
        last = self._last_reply("there is no reply to continue")

        def resume(turn: Turn) -> Any:
            turn.recorded = True
            return self._prompt(self.messages[:-1], last["content"], turn)

        def extend(reply: Reply) -> bool:
            last["content"] += reply.text
            if reply.calls:
                last["tool_calls"] = last.get("tool_calls", []) + [call.as_message() for call in reply.calls]
            if reply.thinking:
                last["thinking"] = last.get("thinking", "") + reply.thinking
            last["finish"] = _stored(reply.finish)
            return True
        return Turn(lambda turn: self._reply(turn, resume, extend), cancelled)

    def retry(self, cancelled: Callable[[], bool] = never) -> Turn:
        """Answer the last question again; the new reply becomes the current alternative
        once it has any text (a retry that fails or is stopped at once adds nothing; an
        empty failed reply is replaced, not kept)."""
        old = self._last_reply("there is no reply to retry")

        def again(turn: Turn) -> Any:
            turn.recorded = True
            return self._prompt(self.messages[:-1], None, turn)

        def add(reply: Reply) -> bool:
            if not (reply.text or reply.finish not in (Finish.ERROR, Finish.CANCELLED)) or self.messages[-1] is not old:
                return False
            if old["content"]:
                branches.add_version(self.messages, len(self.messages) - 1, self._message(reply))
            else:  # a reply that failed before its first word is not worth keeping
                self.messages[-1] = {**self._message(reply), **{k: old[k] for k in branches.TREE_KEYS if k in old}}
            return True
        # A fixed seed would give the same reply again: each alternative gets its own
        # (seed + alternatives so far), so a session still replays the same.
        sampling = self.sampling
        if sampling.seed is not None:
            sampling = sampling.updated(seed=(sampling.seed + len(old.get("alternatives") or []) + 1) % 2**31)
        return Turn(lambda turn: self._reply(turn, again, add, Decoding.of(sampling)), cancelled)

    def edit(self, question: int, text: str, cancelled: Callable[[], bool] = never) -> Turn:
        """Ask question number `question` (from 1) again as `text`, and the reply: a new
        branch; the old question and all that followed it stay an alternative."""
        messages = self.messages
        i = branches.index_of(messages, "user", question)
        if i is None:
            raise ChattermError(f"no question {question}: this conversation has "
                                f"{branches.count(messages, 'user')}")

        def ask(turn: Turn) -> Any:
            before = messages[i:]
            branches.add_version(messages, i, {"role": "user", "content": text})
            try:
                prompt = self._prompt(messages, None, turn)
            except BaseException:
                messages[i:] = before
                raise
            self._recorded(turn)
            return prompt
        return Turn(lambda turn: self._reply(turn, ask, self._append), cancelled)

    def _recorded(self, turn: Turn) -> None:
        """The question is in the conversation, and on disk before its reply starts."""
        turn.recorded = True
        self._changed()

    def _last_reply(self, none: str) -> dict:
        last = self.last_message
        if not last or last["role"] != "assistant":
            raise ChattermError(none)
        return last

    # What `verify` uses of the conversation.
    def changed(self) -> None:
        self._changed()

    def reply_message(self, reply: Reply) -> dict:
        return self._message(reply)

    def prompt_for(self, messages: list[dict]) -> Any:
        """The backend's prompt for a reply to `messages` (not this conversation's own)."""
        return self._fit(messages, None)[0][1]

    def _append(self, reply: Reply) -> bool:
        self.messages.append(self._message(reply))
        return True

    def _prompt(self, messages: list[dict], tail: str | None, turn: Turn) -> Any:
        """The backend's prompt for a reply to `messages` (see `_fit`). A prompt that
        would leave turns out, or fill most of the window, is compacted first (when the
        user has not turned compaction off); leaving turns out stays the fallback."""
        (size, prompt), self.dropped = self._fit(messages, tail)
        if (self.dropped or size > compaction.AUTO_AT * self.backend.n_ctx) and self.sampling.compact \
                and messages is self.messages and tail is None:
            covered = self._compact_before_reply(turn)
            if covered:
                (size, prompt), self.dropped = self._fit(self.messages, tail)
        turn.dropped = self.dropped
        return prompt

    def _compact_before_reply(self, turn: Turn) -> int:
        """Compaction for a reply about to start: how many messages it summarized (0:
        nothing to compact, or the summary could not be made: said, and turns left out)."""
        try:
            covered = self.compact(cancelled=turn.cancelled, question_pending=True)
        except ChattermError as e:
            turn.notices.append(Notice(f"older turns could not be summarized ({e}); they are left out instead"))
            return 0
        if covered:
            turn.compacted = covered
            turn.notices.append(Notice(f"the window was nearly full: {covered} older messages are summarized "
                                       "(/compact show; the session keeps them whole)"))
        return covered

    def compact(self, keep: str = "", cancelled: Callable[[], bool] = never, question_pending: bool = False) -> int:
        """Summarize the older turns with the model (`keep`: what the summary must keep):
        the summary stands in their place for the model, the session keeps them. Returns
        how many messages it covers. `question_pending`: the last message is a question
        about to be answered (it stays after the summary)."""
        messages = self.messages
        point = compaction.split_point(messages[:-1] if question_pending else messages)
        if point is None:
            raise ChattermError("too little to compact yet")
        summary, point = compaction.summarize(self.backend, self.sampling, messages, point, keep, cancelled)
        if not summary:
            raise ChattermError("the model gave no summary")
        before = compaction.latest(messages[:point])
        start = before + 1 if before is not None else int(messages[0]["role"] == "system")
        messages.insert(point, {"role": compaction.ROLE, "content": summary})
        self.measure_again()
        self._changed()
        return point - start

    @property
    def summary(self) -> str | None:
        """The latest summary of older turns (None: never compacted)."""
        at = compaction.latest(self.messages)
        return self.messages[at]["content"] if at is not None else None

    def _fit(self, messages: list[dict], tail: str | None) -> tuple[tuple[int, Any], int]:
        """((size, prompt) of the newest messages that fit with room for a reply,
        how many older ones were left out)."""
        backend = self.backend
        tools = self.toolbox.schemas() if self.toolbox and self.schema is None else None
        told = None
        if self.schema is not None and tail is None:
            from chatterm.structured.schema import instruction

            told = instruction(self.schema)

        messages = compaction.window(messages)

        def measure(kept: list[dict]) -> tuple[int, tuple[int, Any]]:
            if told is not None and kept and kept[-1]["role"] == "user":  # said with the question, never stored
                kept = [*kept[:-1], {**kept[-1], "content": kept[-1]["content"] + "\n\n" + told}]
            size, prompt = backend.measure(kept, tail, self.sampling.think, tools=tools)
            return size, (size, prompt)

        n_ctx = backend.n_ctx
        return context_window.fit(messages, measure, n_ctx,
                                  context_window.reply_reserve(n_ctx, self.sampling.max_tokens),
                                  size_note=backend.size_note)

    def _reply(self, turn: Turn, prepare: Callable[[Turn], Any], record: Callable[[Reply], bool],
               sampling: Decoding | None = None) -> Iterator[Event]:
        """The turn's replies: one, or with tools on, one per round of calls (each call
        yielded for the consumer to decide, its result yielded once it ran or did not,
        then the model answers again), until a reply makes no call. With checking on, a
        code answer is then checked on the question's examples (`verify`)."""
        prompt = prepare(turn)
        yield from turn.notices  # told before the reply (older turns compacted)
        yield from self._rounds(turn, prompt, record, sampling)
        if self.checking is None or self.schema is not None or not turn.kept or turn.cancelled() \
                or self.messages[-1]["role"] != "assistant" \
                or self.messages[-1].get("finish") not in (Finish.EOG.value, Finish.STOP.value):
            return
        question = self._question()
        if question is not None:
            from chatterm.conversation.verify import verified

            yield from verified(self, turn, question)

    def _question(self) -> int | None:
        """Index of the question the last reply answers."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i]["role"] == "user":
                return i
        return None

    def _rounds(self, turn: Turn, prompt: Any, record: Callable[[Reply], bool],
                sampling: Decoding | None) -> Iterator[Event]:
        toolbox = self.toolbox or None
        sampling = Decoding.of(sampling or self.sampling)
        if self.schema is not None:  # the answer is JSON: no tool calls in it
            toolbox = None
            sampling = sampling.updated(json_schema=self.schema)
        if toolbox is not None:
            from chatterm.tools.markup import HERMES

            # Calls in the <tool_call> syntax are kept to their schemas where the engine
            # can (llama.cpp's lazy grammar); other engines ignore it.
            schemas = toolbox.schemas() if self.backend.tool_family is HERMES else None
            sampling = sampling.updated(special_pieces=True, call_schemas=schemas,
                                        call_required=toolbox.choice == "required")
        made = 0  # calls this turn
        repeats, hinted = Repeats(), False  # hinted: the model was told once what a call looks like
        while True:
            hint_now = False
            try:
                reply = self.backend.reply(prompt, sampling, turn.cancelled)
            except ChattermError:
                # No reply could start: the question stays, with an empty failed reply
                # (what /retry replaces), rather than twice or not at all.
                failed = Reply(0)
                failed.finish = Finish.ERROR
                turn.kept = record(failed)
                self._changed()
                raise
            if toolbox is not None:
                from chatterm.tools.markup import CallParser

                question = next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")
                reply.parse_calls(CallParser(self.backend.tool_family, toolbox.tools, quoted=question))
            self.last = turn.reply = reply
            try:
                yield from reply
                if toolbox is not None and not hinted and not reply.calls and reply.finish in (Finish.EOG, Finish.STOP):
                    # It wrote a call as text, or began to write a result itself: shown a real call.
                    owed = FAKED if reply.stopped_by == FAKE_RESULT else None
                    hinted = hint_now = _hint_missing_call(reply, toolbox, owed)
            finally:
                # However it ended, what was generated is recorded (a cut reply is marked).
                if reply.finish is None:  # the consumer stopped iterating
                    reply.finish = Finish.CANCELLED
                self._used = self.backend.settle(prompt, reply)
                turn.kept = record(reply)
                self._changed()
            if toolbox is None or not reply.calls or reply.finish not in (Finish.EOG, Finish.STOP):
                return
            over = made >= toolbox.limit  # it was told to answer, and called again
            made_at = len(self.messages)  # where this round's results begin
            made = yield from self._calls(turn, toolbox, reply.calls, made, repeats)
            if turn.cancelled():
                return
            if over:  # asking again would go on for ever: the limit ends the turn
                yield Notice(f"the model went on calling tools after the limit of {toolbox.limit}: the turn ends here")
                return
            if repeats.stuck:
                yield Notice(f"the model made the same call {repeats.count + 1} times: its calls stop here")
                return
            self._fit_results(made_at)
            record = self._append  # the answer after the results is a message of its own
            # "required" asks for one call, not calls for ever; after a hint, the next reply is the call
            sampling = sampling.updated(call_required=hint_now)
            prompt = self._prompt(self.messages, None, turn)

    def _fit_results(self, start: int) -> None:
        """The tool results from `messages[start]` on, cut (head and tail kept, what was
        left out said) where together they would not leave the window room for the
        rest of the conversation and a reply: the model always gets to answer."""
        results = [m for m in self.messages[start:] if m["role"] == "tool"]
        if not results:
            return
        backend, n_ctx = self.backend, self.backend.n_ctx
        reserve = context_window.reply_reserve(n_ctx, self.sampling.max_tokens)
        sizes = [backend.count(m["content"]) for m in results]
        if self._used is not None and self._used + sum(sizes) + 16 * len(sizes) + reserve <= n_ctx:
            return  # the common case: they fit, as the window was after the reply
        emptied = [*self.messages[:start], *({**m, "content": ""} for m in self.messages[start:])]
        try:
            (rest, _), _ = self._fit(emptied, None)
        except ChattermError:
            rest = n_ctx
        room = max(RESULT_FLOOR, (n_ctx - reserve - rest) // len(results))
        for message, size in zip(results, sizes):
            if size > room:
                message["content"] = head_and_tail(message["content"], room, backend.count)
        self.measure_again()

    def _calls(self, turn: Turn, toolbox: Toolbox, calls: list[ToolCall], made: int,
               repeats: Repeats) -> Generator[Event, None, int]:
        """Each call decided (beforehand, or by the consumer when it is yielded), run
        or not, and its result recorded and yielded; returns the calls made so far."""
        from chatterm.tools.toolbox import declined_as_repeat, declined_for_limit

        told = False
        for call in calls:
            ran = False
            earlier = repeats.earlier(call)
            if earlier is not None:
                result = declined_as_repeat(call, earlier)
                made += 1  # a model that only repeats itself still reaches the limit
            elif made >= toolbox.limit:
                result = declined_for_limit(call, toolbox.limit)
                if not told:
                    told = True
                    yield Notice(f"this turn reached its limit of {toolbox.limit} tool calls; "
                                 "the model is told to answer")
            elif turn.cancelled():
                call.decline("stopped")
                result = toolbox.run(call, turn.cancelled)
            else:
                toolbox.decide_beforehand(call)
                yield call  # undecided: the consumer approves or declines it before asking for more
                result = toolbox.run(call, turn.cancelled)
                ran = call.decision == YES
                made += 1
            repeats.remember(call, result.text, ran)
            self.messages.append(result.as_message())
            self._changed()
            yield result
        return made

    def _message(self, reply: Reply) -> dict:
        """A reply as the session keeps it: the answer, its finish, its tool calls, any
        thinking apart (never sent back to the model: `backend.wire` takes the answer
        only), and the LoRA adapters that made it."""
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "finish": _stored(reply.finish)}
        if reply.calls:
            message["tool_calls"] = [call.as_message() for call in reply.calls]
        if reply.thinking:
            message["thinking"] = reply.thinking
        adapters = self.model.adapters_in_effect()
        if adapters:
            message["adapters"] = adapters
        return message

    # ------------------------------------------------------------ alternatives, ratings
    def fork(self, role: str | None = None, number: int | None = None) -> int:
        """Index of the message `/alt` switches: message `number` of `role` ("user" or
        "assistant"); by default the last reply, or the last question when only it has
        other versions (an edited question)."""
        messages = self.messages
        if role is not None and number is not None:
            i = branches.index_of(messages, role, number)
            if i is None:
                has = branches.count(messages, role)
                raise ChattermError(f"no {_NOUNS[role]} {number}: this conversation has {has}")
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
        self.measure_again()
        self._changed()

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
        self._changed()
        return number

    # ------------------------------------------------------------ edits
    def undo(self) -> None:
        """Remove the last question and its reply."""
        messages = self.messages
        end = len(messages) - (1 if messages and messages[-1]["role"] == "assistant" else 0)
        if not end or messages[end - 1]["role"] != "user":
            raise ChattermError("nothing to undo")
        del messages[end - 1:]
        self.measure_again()
        self._changed()

    def set_system(self, text: str) -> None:
        if self.system is not None:
            self.messages[0]["content"] = text
        else:
            self.messages.insert(0, {"role": "system", "content": text})
        self.measure_again()
        self._changed()

    def set_sampling(self, name: str, value: Any) -> None:
        """`value` None: back to the model's default."""
        if name not in SETTINGS:
            raise ChattermError(f"unknown setting {name!r} ({', '.join(SETTINGS)})")
        if value is None:
            self.overrides.pop(name, None)
        else:
            self.overrides[name] = SETTINGS[name].check(value)
        self._changed()

    def open(self, session: Session, keep_system: bool = False) -> None:
        """Another session in this one's place (/new, /load): its messages and
        settings; saved from its first turn on, like any new one. `keep_system`: an
        empty one starts with this one's system prompt and settings (/new)."""
        if keep_system and not session.messages:
            session.messages = [dict(m) for m in self.messages[:1] if m["role"] == "system"]
            session.sampling = dict(self.overrides)
        if self.toolbox is not None:
            self.toolbox.always.clear()  # "always" was said of the other session
        self.session = session
        self.last = None
        self.dropped = 0
        self.measure_again()

    def move_to(self, session: Session) -> None:
        """This conversation goes on in `session` (a one-shot answer continued in a
        chat, `-i`): its turns after the session's own, its settings over the session's."""
        session.messages += [m for m in self.messages if m["role"] != "system" or not session.messages]
        session.sampling = {**session.sampling, **self.overrides}
        self.open(session)

    def switch(self, model: Model) -> None:
        """Another model answers from now on; messages and the user's settings stay."""
        self._use(model)
        self.last = None
        self.measure_again()

    def _use(self, model: Model, defaults: Sampling | None = None) -> None:
        self.model, self.backend = model, model.backend
        self.defaults = defaults or model.defaults
        self._name_model()

    def measure_again(self) -> None:
        """What the window holds changed (the messages, the model, the tools offered):
        the next `measure` counts again."""
        self._used = None


_NOUNS = {"user": "question", "assistant": "reply"}


def _hint_missing_call(reply: Reply, toolbox: Toolbox, owed: str | None) -> bool:
    """A reply that wrote a call as text, or owed a run (`owed`: what to tell it) and
    made none, gets a call that did not parse whose error shows the model a real one
    (with its own last code block); it answers again, held to a call. True when it did."""
    written = written_as_text(reply.text, toolbox.tools)
    name = written or (next((n for n in ("python", "run") if n in toolbox.tools), next(iter(toolbox.tools), None))
                       if owed else None)
    if name is None or name not in toolbox.tools:
        return False
    example = {key: "..." for key in toolbox.tools[name].parameters.get("required", [])}
    if "code" in example:  # its own code, so the call it copies is the whole program, and its examples
        code = last_code_block(reply.text) or "..."
        example["code"] = "\n".join([code, *(example_prints(code) or ["# and the lines that print its results"])])
    reply.calls.append(ToolCall(name, None, error=call_shape(name, example, WRITTEN if written else owed or FAKED)))
    return True


RESULT_FLOOR = 48  # tokens a result keeps however full the window is


def head_and_tail(text: str, room: int, count: Callable[[str], int]) -> str:
    """`text` within `room` tokens: its start and its end, and between them how many
    characters were left out (for the model, which may ask for a part)."""
    def cut(keep: int) -> str:
        return f"{text[:keep // 2]}\n[... {len(text) - keep:,} characters left out to fit the context window ...]\n" \
               f"{text[len(text) - keep // 2:] if keep // 2 else ''}"
    low, high = 0, len(text)  # cut(low) fits (or low is 0); cut(high) is the whole
    while high - low > 16:
        middle = (low + high) // 2
        if count(cut(middle)) <= room:
            low = middle
        else:
            high = middle
    return cut(low)


def _stored(finish: Finish | None) -> str | None:
    return finish.value if finish is not None else None


