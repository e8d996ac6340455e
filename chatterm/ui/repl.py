"""The interactive chat: a prompt_toolkit prompt, replies streamed through the
Markdown renderer, slash commands, and a session saved after every change.

The loop never dies: an error or a Ctrl-C while handling one input is one line, then
the prompt comes back. Ctrl-C during a reply cancels the reply only; Ctrl-D or /exit
quits. The model loads in its engine worker while the first question is typed; when
the engine crashes, the reply so far is kept and a new worker is loading before the
next prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app, run_in_terminal
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.text import Text

from chatterm import attachments, loader, paths, safe_files, sessions
from chatterm.attachments import Attachment
from chatterm.conversation import Conversation, Finish
from chatterm.errors import ChattermError, ContextOverflowError, EngineError
from chatterm.loader import Model, RunOptions
from chatterm.ui import commands, terminal
from chatterm.session_lock import SessionLock
from chatterm.ui.interrupt import CancelFlag, ctrl_c_cancels, ended_by_signals, no_echo
from chatterm.ui.render import CodeBlock, StreamRenderer, make_console
from chatterm.ui.sanitize import clean

ENDINGS = {Finish.CANCELLED: "reply cut: /continue resumes it",
           Finish.LENGTH: "reached max_tokens: /continue resumes it",
           Finish.CONTEXT: "the context window is full"}
WATCH_S = 0.1  # how often the prompt looks at a loading engine
REPLAYED = 20  # messages of a resumed session shown again (the newest)
PROMPT_FAILURES = 3  # the prompt failing this often in a row ends the chat (saved) rather than spin


class SlashCompleter(Completer):
    """Command names after '/'; after a command, what that command completes."""

    def get_completions(self, document: Document, event: Any) -> Iterator[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        name, space, arg = text[1:].partition(" ")
        if not space:
            for cmd in commands.COMMANDS.values():
                if cmd.name.startswith(name.lower()):
                    yield Completion("/" + cmd.name, start_position=-len(text), display_meta=cmd.help)
            return
        cmd = commands.COMMANDS.get(name.lower())
        if cmd is not None and cmd.complete is not None:
            yield from cmd.complete(arg)


def key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        """Esc+Enter / Alt+Enter inserts a newline; Enter sends."""
        event.current_buffer.insert_text("\n")

    empty = Condition(lambda: not get_app().current_buffer.text)

    @kb.add("escape", "left", filter=empty)
    def _previous_alternative(event: Any) -> None:
        """Alt-← at an empty prompt: the previous alternative (/alt prev)."""
        event.app.exit(result="/alt prev")  # a command, though not one for the history

    @kb.add("escape", "right", filter=empty)
    def _next_alternative(event: Any) -> None:
        """Alt-→ at an empty prompt: the next alternative (/alt next)."""
        event.app.exit(result="/alt next")

    return kb


class _History(FileHistory):
    """The input history file; one that cannot be read or written (a folder in its
    place, a full disk, permissions changed mid-chat) leaves the history in memory,
    and `problem` says why, for the chat to tell once."""

    def __init__(self, path: str):
        super().__init__(path)
        self.problem = ""

    def load_history_strings(self) -> Iterator[str]:
        try:
            yield from super().load_history_strings()
        except (OSError, ValueError) as e:
            self.problem = f"cannot read the history file {self.filename!s}: {getattr(e, 'strerror', None) or e}"

    def store_string(self, string: str) -> None:
        if self.problem:
            return
        try:
            super().store_string(string)
        except (OSError, ValueError) as e:
            self.problem = (f"cannot write the history file {self.filename!s}: "
                            f"{getattr(e, 'strerror', None) or e}; this chat's history stays in memory")


class _Unsaved(InMemoryHistory):
    """The history in memory only, and why."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


def _history() -> History:
    path = paths.data_dir() / "history"
    why = safe_files.why_unreadable(path)
    if why not in (None, "no such file"):  # a FIFO would block the first Enter
        return _Unsaved(f"the history file {path} is {why}; this chat's history stays in memory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        return _History(str(path))
    except OSError as e:
        return _Unsaved(f"cannot use the history file {path}: {e.strerror or e}; this chat's history stays in memory")


class Repl:
    """The loop, and the `commands.CommandContext` slash commands work through."""

    def __init__(self, options: RunOptions, session: sessions.Session, *,
                 loaded: Model | None = None, conversation: Conversation | None = None,
                 console: Console | None = None, input: Any = None, output: Any = None,
                 load: Callable[[RunOptions], Model] = loader.load, attached: list[Attachment] | None = None):
        self.options = options
        self.load = load  # how /model loads a model
        output = output if output is not None else terminal.prompt_output()  # prompt_toolkit draws on the raw terminal
        self._io = {"input": input, "output": output}
        self.console = console or make_console()
        self.loaded = loaded or load(options)
        self.conversation = conversation or _conversation(self.loaded, options, session)
        self.session = session
        self.code_blocks: list[CodeBlock] = []
        self.prefill = ""
        self.editing: int | None = None  # the question being edited in the input (/edit)
        self.attached: list[Attachment] = list(attached or [])  # files for the next message (/file, -f)
        self._cancel = CancelFlag()
        self._told: set[str] = set()  # engine notes already shown
        self._started = False  # a first input was handled: the chat is under way
        self._lock: SessionLock | None = None  # this chat's hold on its session (`claim`)
        self.read_only = False  # the session is open in another chat, and this one only reads it
        self._save_problem = ""  # why the last autosave failed ("" when it did not)
        self._counting: concurrent.futures.Future | None = None  # the toolbar's count, off the UI thread
        self._counter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chatterm-count")
        self.ending = CancelFlag()  # SIGTERM or SIGHUP arrived: the chat ends after this input
        self._refused = ""  # why the text in the input was not sent (shown in the toolbar)
        if not session.messages:
            session.messages = self.conversation.messages  # the system prompt, or a piped-in turn
        elif session.messages is not self.conversation.messages:  # -i into a saved session: add the turn
            session.messages += [m for m in self.conversation.messages if m["role"] != "system"]
            self.conversation.replace_messages(session.messages)
        self.conversation.on_change = self.autosave
        self.history = _history()
        self.prompt = PromptSession(
            history=self.history, auto_suggest=AutoSuggestFromHistory(),
            completer=SlashCompleter(), complete_while_typing=True,
            key_bindings=key_bindings(), bottom_toolbar=self.toolbar, multiline=False,
            enable_open_in_editor=True, input=input, output=output)

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        """Read and handle inputs until Ctrl-D, /exit, SIGTERM or SIGHUP. Whatever goes
        wrong with one input is one line, and the prompt comes back."""
        sessions.clean_leftovers()
        if self._lock is None and not self.read_only and not self.begin():
            return
        failures = 0  # of the prompt in a row
        while not self.ending():
            marker = f"edit {self.editing}› " if self.editing else "› "
            try:
                text = self.prompt.prompt([("class:prompt", marker)], default=self.prefill,
                                          pre_run=self._watch_engine)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line (and an edit)
                self.prefill, self.editing, self._refused = "", None, ""
                continue
            except EOFError:
                break
            except Exception as e:  # the prompt itself failed: said, the input kept, asked again
                failures += 1
                self.prefill = self.prompt.default_buffer.text
                self.error(f"unexpected error at the prompt: {type(e).__name__}: {e}")
                if failures >= PROMPT_FAILURES:
                    raise ChattermError(f"the prompt failed {failures} times in a row; the session is saved") from None
                continue
            finally:
                self._settle_count()
            failures = 0
            self._tell_history_problem()
            self.prefill, self._refused = "", ""
            if not text.strip():
                continue
            self._started = True
            try:
                if text.startswith("/") and not text.startswith("//"):
                    self.editing = None
                    commands.dispatch(self, text)
                else:
                    self.ask(text[1:] if text.startswith("//") else text)
            except EOFError:
                break
            except KeyboardInterrupt:  # in a command that was not streaming: it stops, the chat goes on
                self.note("(stopped)")
            except ChattermError as e:
                self.error(str(e))
            except Exception as e:  # the loop never dies
                self.error(f"unexpected error: {type(e).__name__}: {e}")

    def close(self) -> None:
        """The chat is over: the session saved (elsewhere if its folder refuses it), the
        engine and the counting thread stopped, the session's lock released."""
        try:
            self._counter.shutdown(wait=True, cancel_futures=True)
            self.loaded.close()
            if self._lock is not None and not self.read_only and any(
                    m["role"] != "system" for m in self.conversation.messages):
                self.autosave()
                if self._save_problem:
                    self._save_fallback()
                else:
                    self.note(f"session saved: {self.session.path} (chatterm -c resumes it)")
        finally:
            self.release_session()

    def release_session(self) -> None:
        """Let another chat open this session (the chat is over)."""
        if self._lock is not None:
            self._lock.release()

    def _save_fallback(self) -> None:
        """The session's own file could not be written: the conversation goes to the
        temporary folder, and the user is told where (or that even that failed)."""
        fallback = Path(tempfile.gettempdir()) / f"chatterm-{self.session.name}.json"
        try:
            self.save(fallback)
        except ChattermError as e:
            raise ChattermError(f"the session could not be saved: {self._save_problem}; nor to {fallback}: {e}") from None
        self.error(f"the session could not be saved to {self.session.path} ({self._save_problem}); "
                   f"it is in {fallback} (/load {fallback} reopens it)")

    def banner(self) -> None:
        l = self.loaded
        self.note(f"chatterm · {l.spec.name} on {l.engine_name} · "
                  f"session {self.session.name}{' (read-only)' if self.read_only else ''} · "
                  "/help for commands, Ctrl-D to quit")
        if self.attached:
            self.note(f"{len(self.attached)} files go with your first message (/file lists them)")

    def toolbar(self) -> list[tuple[str, str]]:
        """Never waits, never fails: what it shows was counted off the UI thread
        (`_count`); a toolbar that cannot be drawn shows the model's name alone."""
        try:
            return self._toolbar()
        except Exception as e:
            return [("class:bottom-toolbar", f" {self.loaded.spec.name} · (toolbar: {type(e).__name__}) ")]

    def _toolbar(self) -> list[tuple[str, str]]:
        conversation, reply, model = self.conversation, self.conversation.last, self.loaded
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
        if self.attached:
            counted = state == "ready" and all(f.tokens is not None for f in self.attached)
            cost = sum(f.tokens or 0 for f in self.attached) if counted else None
            files = f" · +{len(self.attached)} file{'s' if len(self.attached) > 1 else ''}" + (
                f" ({cost:,} tokens)" if cost is not None else "")  # /file tells what they leave
        refused = f"\n {self._refused} " if self._refused else ""
        return [("class:bottom-toolbar",
                 f" {self.loaded.spec.name} · {self.loaded.engine_name} · {where}{speed}{files} {refused}")]

    def attached_tokens(self) -> int:
        """What the attached files add to the next message, counted once each."""
        for f in self.attached:
            if f.tokens is None:
                f.tokens = self.loaded.count(f.block())
        return sum(f.tokens or 0 for f in self.attached)

    def _count(self) -> None:
        """What the toolbar shows (tokens in the window, the attached files' cost),
        counted on the counting thread: a slow tokenizer or chat template never
        holds up a key."""
        self.conversation.measure()
        self.attached_tokens()

    def _settle_count(self) -> None:
        """The input is in: the count (if still running) ends before anything else
        uses the engine; its failure is the toolbar's, not this input's."""
        counting, self._counting = self._counting, None
        if counting is not None:
            try:
                counting.result()
            except Exception:
                pass  # said by whatever uses the engine next

    def _tell_history_problem(self) -> None:
        self._once(getattr(self.history, "problem", ""), self.error)

    async def _engine_news(self) -> None:
        """While the prompt waits for input: tell what the loading engine settles on
        (its notes, a failure, a crash while loading) above the prompt when it happens,
        and count what the toolbar shows once it has loaded."""
        model = self.loaded
        while True:
            state = model.state()
            if state == "ready":
                if any(n not in self._told for n in model.notes):
                    await run_in_terminal(self.tell_notes)
                if self._counting is None:
                    self._counting = self._counter.submit(self._count)
                try:
                    await asyncio.wrap_future(self._counting)
                except Exception:
                    pass
                get_app().invalidate()  # the toolbar shows the device and context now
                return
            if state != "loading":
                try:
                    model.wait_ready()  # raises the failure, or the crash (once)
                except ChattermError as e:
                    app = get_app()
                    if state == "failed" and not self._started and not app.current_buffer.text:
                        # The model chatterm was started with cannot load, and nothing
                        # was typed yet: one line and exit status 1, as before a prompt.
                        app.exit(exception=e)
                        return
                    message = str(e)
                    if message not in self._told:  # a failed load is told once, not at every prompt
                        self._told.add(message)
                        await run_in_terminal(lambda: self.error(message))
                get_app().invalidate()
                if state == "failed":
                    return
            await asyncio.sleep(WATCH_S)

    def _watch_engine(self) -> None:
        get_app().create_background_task(self._engine_news())

    def tell_notes(self) -> None:
        from chatterm.ui.hints import think_ignored

        notes = self.loaded.notes
        if self.conversation.think_ignored:
            notes.append(think_ignored("/set think"))
        for note in notes:
            self._once(note, self.note)

    def _once(self, text: str, say: Callable[[str], None]) -> None:
        """`say(text)` the first time this chat has `text` to say (a note, a hint, a
        failure that stays)."""
        if text and text not in self._told:
            self._told.add(text)
            say(text)

    # ------------------------------------------------------------ turns
    def ask(self, text: str) -> None:
        """A question that is not sent (the model did not load, the user stopped waiting
        for it, it does not fit the window) goes back into the input, for editing; one
        that was recorded stays recorded, once, and never goes back too. While a
        question is being edited (/edit), the text is its new version."""
        if self.read_only:
            self.prefill = text
            raise ChattermError(f"session {self.session.name} is read-only here (it is open in another chatterm): "
                                "/new starts a new session, /save PATH writes a copy")
        editing, self.editing = self.editing, None
        from chatterm.ui.hints import chinese_hint

        self._once(chinese_hint(text, self.loaded.spec, "/model") or "", self.note)
        message = attachments.message(self.attached, text) if self.attached else text
        last = self.conversation.last_message
        try:
            chunks = (self.conversation.edit(editing, message, self.cancelled) if editing
                      else self.conversation.send(message, self.cancelled))
            sent = self.show_reply(chunks)
        except ChattermError as e:
            if self.conversation.last_message is not last:  # recorded (with the failed reply): /retry
                self.attached = []
            else:
                self.prefill, self.editing = text, editing
                if isinstance(e, ContextOverflowError):
                    # Back in the input, which may be taller than the screen: the
                    # toolbar keeps saying why until the next input.
                    self._refused = f"not sent: {' '.join(str(e).split())}; /ctx N sets the window"
            raise
        if sent:
            self.attached = []
        else:
            self.prefill, self.editing = text, editing

    def compose(self) -> str:
        """A message written in $VISUAL/$EDITOR (what the file holds once it closes)."""
        import shlex
        import subprocess
        import tempfile

        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or next(
            (e for e in ("editor", "nano", "vim", "vi", "emacs") if shutil.which(e)), "vi")  # as Ctrl-X Ctrl-E does
        fd, name = tempfile.mkstemp(prefix="chatterm-", suffix=".md")
        os.close(fd)
        try:
            try:
                subprocess.run([*shlex.split(editor), name], check=True)
            except (OSError, ValueError, subprocess.CalledProcessError) as e:
                raise ChattermError(f"cannot use the editor {editor!r} ({e}); set VISUAL or EDITOR") from None
            with open(name, encoding="utf-8", errors="replace") as f:
                return f.read().rstrip("\n")
        finally:
            os.unlink(name)

    def begin_edit(self, question: int, text: str) -> None:
        self.prefill, self.editing = text, question
        self.note(f"editing question {question}: Enter asks it again (the old one stays: /alt), "
                  "Ctrl-X Ctrl-E opens $EDITOR, Ctrl-C cancels")

    def cancelled(self) -> bool:
        return self._cancel()

    def wait_for_engine(self, loaded: Model) -> bool:
        """Wait for `loaded`'s model to load, with a spinner; False at Ctrl-C."""
        if loaded.state() == "ready":
            return True
        with ctrl_c_cancels() as flag, \
                self.console.status(f"loading {loaded.spec.name}… (Ctrl-C to stop waiting)"):
            try:
                return loaded.wait_ready(flag)
            except KeyboardInterrupt:
                return False

    def show_reply(self, chunks: Iterator[str]) -> bool:
        """Render a reply as it streams; False if the model had not loaded and the
        user stopped waiting for it (nothing was sent)."""
        if not self.wait_for_engine(self.loaded):
            self.note("(stopped waiting for the model)")
            return False
        self.tell_notes()
        conversation = self.conversation
        renderer = StreamRenderer(self.console)
        failure: EngineError | None = None
        before = conversation.last
        try:
            with ctrl_c_cancels() as flag, no_echo():
                self._cancel = flag
                try:
                    for chunk in chunks:
                        renderer.feed(chunk)
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()  # however this ends, the reply is recorded (and saved) now
                    renderer.finish()
        except KeyboardInterrupt:  # a second Ctrl-C during a long prompt evaluation
            pass
        except EngineError as e:
            if conversation.last is before:
                raise  # no reply started: the caller keeps what was asked
            failure = e  # the reply so far is kept: said on the error's line
        finally:
            self._cancel = CancelFlag()
        self.code_blocks = renderer.code_blocks
        reply = conversation.last
        if conversation.dropped:
            self.note(f"({conversation.dropped} oldest messages left out to fit the context window)")
        if failure is not None:
            kept = reply is not None and reply.text
            self.error(failure.adding("; the reply so far is kept: /continue resumes it" if kept
                                      else "; /retry asks again"))
        elif reply is not None and reply.finish in ENDINGS:
            self.note(f"({ENDINGS[reply.finish]})")
        return True

    # ------------------------------------------------------------ sessions
    def open_session(self, session: sessions.Session, keep_system: bool = False) -> None:
        """`session` in place of the current one, with its messages and settings (a
        new one, `keep_system`, starts with the current system prompt and settings).
        One open in another chat is continued as a copy, or read, as the user chooses."""
        conversation = self.conversation
        claimed = self.claim(session)
        if claimed is None:
            raise ChattermError(f"session {session.name} not opened; still in {self.session.name}")
        session = claimed
        if keep_system and not session.messages:
            session.messages = [dict(m) for m in conversation.messages[:1] if m["role"] == "system"]
            session.sampling = dict(conversation.overrides)
        self.session = session
        self.code_blocks = []
        conversation.replace_messages(session.messages)
        conversation.overrides = dict(session.sampling)

    def claim(self, session: sessions.Session | None = None) -> sessions.Session | None:
        """Take the lock of `session` (default: the current one) for this chat, in place
        of the lock held before. When another chat holds it, the user chooses: go on in
        a copy under a new name, only read it here, or leave it (None)."""
        session = session or self.session
        if session.path == self.session.path and self._lock is not None and not self.read_only:
            return session  # this chat holds it already (/load of the session open here)
        while True:
            lock = SessionLock.take(session.path)
            if isinstance(lock, SessionLock):
                read_only = False
                break
            holder = f" (pid {lock})" if lock else ""
            answer = self.choose(f"session {session.name} is open in another chatterm{holder}: "
                                 "[c]ontinue in a copy, [r]ead it only, or [q]uit?", "crq")
            if answer == "q":
                return None
            if answer == "r":
                lock, read_only = SessionLock(None), True
                break
            session = dataclasses.replace(session, name=_free_name(session.name), stamp=None)
            self.note(f"continuing in a copy: session {session.name}")
        if self._lock is not None:
            self._lock.release()
        self._lock, self.read_only = lock, read_only
        if session.repaired:
            self.note(f"session {session.name}: {session.repaired}")
        return session

    def begin(self) -> bool:
        """Claim the session the chat starts in (False: the user chose to leave)."""
        claimed = self.claim()
        if claimed is None:
            return False
        self.session = claimed
        return True

    def choose(self, question: str, letters: str) -> str:
        """One of `letters` (the first is the default; the last at the end of input)."""
        while True:
            try:
                answer = PromptSession(**self._io).prompt(f"{question} ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                return letters[-1]
            if not answer:
                return letters[0]
            if answer[0] in letters:
                return answer[0]

    def autosave(self) -> None:
        """After every change (`Conversation.on_change`): the session on disk. A save
        that fails is said once, the conversation stays as it is in memory, and the
        next change saves it again. A file someone else wrote since is never
        overwritten: this chat goes on in a copy beside it."""
        if self.read_only:
            return
        session = self.session
        try:
            if session.changed_elsewhere():
                old = session.name
                self._move_to_copy(session)
                self.note(f"session {old} was written by another program since this chat opened it: "
                          f"this chat goes on as {session.name} (both kept)")
            self.save()
        except ChattermError as e:
            if str(e) != self._save_problem:
                self.error(f"not saved: {e}; the conversation is kept, and saved again at the next change "
                           "(/save PATH writes it elsewhere)")
            self._save_problem = str(e)
            return
        if self._save_problem:
            self._save_problem = ""
            self.note(f"saved again: {session.path}")

    def _move_to_copy(self, session: sessions.Session) -> None:
        """`session` goes on under the first free name beside its own, locked for this
        chat (asked of nobody: it is called between the steps of a turn)."""
        while True:
            session.name, session.stamp = _free_name(session.name), None
            lock = SessionLock.take(session.path)
            if isinstance(lock, SessionLock):
                break
        if self._lock is not None:
            self._lock.release()
        self._lock = lock

    def save(self, path: Any = None) -> Any:
        if path is None and self.read_only:
            raise ChattermError(f"session {self.session.name} is read-only here: /save PATH writes a copy")
        session = self.session
        session.messages = self.conversation.messages
        session.sampling = dict(self.conversation.overrides)
        session.model, session.engine = self.loaded.spec.name, self.loaded.engine_name  # a crash may switch engines
        return session.save(path)

    def replay(self) -> None:
        """The newest messages of the conversation again (a long one is not replayed
        whole: its file holds it all)."""
        messages = self.conversation.messages
        shown = messages[-REPLAYED:]
        if len(messages) > len(shown):
            self.note(f"… {len(messages) - len(shown):,} earlier messages (in {self.session.path})")
        for m in shown:
            if m["role"] == "user":
                self.show_question(m["content"])
            elif m["role"] == "assistant":
                self.show_message(m)
        self.note(f"session {self.session.name}: {len(messages):,} messages")

    def show_question(self, text: str) -> None:
        self.console.print(Text("› " + text, style="bold"))

    def show_message(self, message: dict) -> None:
        """A reply as the transcript shows it: rendered, then its rating and versions."""
        if message.get("thinking"):
            self.note(f"▸ thought ({len(message['thinking'].split())} words) · /think show")
        renderer = StreamRenderer(self.console)
        renderer.feed(message["content"])
        renderer.finish()
        self.code_blocks = renderer.code_blocks
        versions = sessions.versions_text(message)
        marks = [sessions.rating_text(message), versions and f"{versions} (/alt)"]
        if any(marks):
            self.note(clean("  ·  ".join(m for m in marks if m)))

    def switch_model(self, name: str) -> None:
        self._reload(dataclasses.replace(self.options, model=name))

    def resize(self, n_ctx: int) -> None:
        """The same model with a context window of `n_ctx` tokens (/ctx)."""
        self._reload(dataclasses.replace(self.options, ctx=n_ctx))

    def _reload(self, options: RunOptions) -> None:
        """The model `options` choose replaces the one answering only once it has
        loaded: one that fails to load, or a Ctrl-C while it loads, leaves the chat
        as it was."""
        loaded = self.load(options)
        try:
            ready = self.wait_for_engine(loaded)
        except BaseException:
            loaded.close()
            raise
        if not ready:
            loaded.close()
            self.note(f"(stopped loading {loaded.spec.name}; still chatting with {self.loaded.spec.name})")
            return
        old = self.loaded
        self.loaded, self.options = loaded, options
        self.conversation.switch(loaded)
        old.close()
        self.note(f"now chatting with {loaded.spec.name} on {loaded.engine_name} ({loaded.device}, "
                  f"context window {loaded.n_ctx:,} tokens)")
        self.tell_notes()

    def confirm(self, question: str) -> bool:
        """Yes unless the user says no; no at the end of input."""
        try:
            answer = PromptSession(**self._io).prompt(f"{question} [Y/n] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("", "y", "yes")

    def pull(self, name: str) -> None:
        """Download a catalogue model, with the progress display, into the models folder."""
        from chatterm.ui.manage import pull_model

        pull_model(name, self.console.file, ask=False)

    # ------------------------------------------------------------ output
    # One logical line each, wrapped by the terminal rather than broken by rich: a
    # message copied from the screen (a path, a command to run) comes out whole.
    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"), soft_wrap=True)

    def error(self, text: str) -> None:
        self.console.print(Text(f"error: {clean(' '.join(text.split()))}", style="bold red"), soft_wrap=True)


def _free_name(name: str) -> str:
    """`name-2`, `name-3`, ...: the first no session file has."""
    n = 2
    while (sessions.sessions_dir() / f"{name}-{n}.json").exists():
        n += 1
    return f"{name}-{n}"


def _conversation(loaded: Model, options: RunOptions, session: sessions.Session) -> Conversation:
    """A conversation for `session`: its messages, and its saved settings under the
    ones given now on the command line."""
    conversation = loader.conversation(loaded, options, saved=session.sampling)
    if session.messages:
        conversation.replace_messages(session.messages)
    return conversation


def choose_session(name: str | None, resume: bool) -> sessions.Session:
    if resume:
        recent = sessions.most_recent()
        if recent is None:
            raise ChattermError("no saved session to continue")
        return sessions.load(recent)
    if name:
        if not sessions.NAME.match(name):
            raise ChattermError(f"session names use letters, digits, '.', '_', '@' and '-': {name!r}")
        if (sessions.sessions_dir() / f"{name}.json").exists():
            return sessions.load(name)
        return sessions.Session(name=name)
    return sessions.Session(name=sessions.new_name())


def run_repl(options: RunOptions, *, session: str | None = None, resume: bool = False,
             color: str = "auto", loaded: Model | None = None, conversation: Conversation | None = None,
             tty_input: bool = False, attached: list[Attachment] | None = None) -> None:
    chosen = choose_session(session, resume)
    console = make_console(color)
    pt_input = None
    if tty_input:  # stdin was a pipe (chatterm -i): talk to the terminal itself
        from prompt_toolkit.input import create_input
        try:
            pt_input = create_input(open("/dev/tty"))
        except OSError:
            raise ChattermError("no terminal to continue the chat on (-i needs one)") from None
    resumed = bool(chosen.messages)
    repl = Repl(options, chosen, loaded=loaded, conversation=conversation, console=console, input=pt_input,
                attached=attached)
    with ended_by_signals() as ending:
        repl.ending = ending
        try:
            if not repl.begin():
                return
            repl.banner()
            if resumed:
                repl.replay()
            repl.run()
        finally:
            repl.close()
