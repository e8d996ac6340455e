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
import dataclasses
import os
import shutil
import sys
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

from chatterm import attachments, loader, paths, sessions
from chatterm.attachments import Attachment
from chatterm.conversation import Conversation, Finish
from chatterm.errors import ChattermError, EngineError
from chatterm.loader import Loaded, RunOptions
from chatterm.ui import commands
from chatterm.ui.interrupt import CancelFlag, ctrl_c_cancels, no_echo
from chatterm.ui.render import CodeBlock, StreamRenderer, make_console
from chatterm.ui.sanitize import clean

ENDINGS = {Finish.CANCELLED: "reply cut: /continue resumes it",
           Finish.LENGTH: "reached max_tokens: /continue resumes it",
           Finish.CONTEXT: "the context window is full"}
WATCH_S = 0.1  # how often the prompt looks at a loading engine


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


def _history() -> History:
    path = paths.data_dir() / "history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()


class Repl:
    """The loop, and the `commands.CommandContext` slash commands work through."""

    def __init__(self, options: RunOptions, session: sessions.Session, *,
                 loaded: Loaded | None = None, conversation: Conversation | None = None,
                 console: Console | None = None, input: Any = None, output: Any = None,
                 load: Callable[[RunOptions], Loaded] = loader.load, attached: list[Attachment] | None = None):
        self.options = options
        self.load = load  # how /model loads a model
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
        if not session.messages:
            session.messages = self.conversation.messages  # the system prompt, or a piped-in turn
        elif session.messages is not self.conversation.messages:  # -i into a saved session: add the turn
            session.messages += [m for m in self.conversation.messages if m["role"] != "system"]
            self.conversation.replace_messages(session.messages)
        self.conversation.on_change = self.save
        self.prompt = PromptSession(
            history=_history(), auto_suggest=AutoSuggestFromHistory(),
            completer=SlashCompleter(), complete_while_typing=True,
            key_bindings=key_bindings(), bottom_toolbar=self.toolbar, multiline=False,
            enable_open_in_editor=True, input=input, output=output)

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        sessions.clean_leftovers()
        self.conversation.measure()  # a server is asked now, not while the toolbar paints
        while True:
            marker = f"edit {self.editing}› " if self.editing else "› "
            try:
                text = self.prompt.prompt([("class:prompt", marker)], default=self.prefill,
                                          pre_run=self._watch_engine)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line (and an edit)
                self.prefill, self.editing = "", None
                continue
            except EOFError:
                break
            self.prefill = ""
            if not text.strip():
                continue
            self._started = True
            try:
                if text.startswith("/") and not text.startswith("//"):
                    self.editing = None
                    commands.dispatch(self, text)
                else:
                    self.ask(text[1:] if text.startswith("//") else text)
                self.conversation.measure()  # as above
            except EOFError:
                break
            except KeyboardInterrupt:  # in a command that was not streaming: it stops, the chat goes on
                self.note("(stopped)")
            except ChattermError as e:
                self.error(str(e))
            except Exception as e:  # the loop never dies
                self.error(f"unexpected error: {type(e).__name__}: {e}")

    def banner(self) -> None:
        l = self.loaded
        self.note(f"chatterm · {l.spec.name} on {l.engine_name} · "
                  f"session {self.session.name} · /help for commands, Ctrl-D to quit")
        if self.attached:
            self.note(f"{len(self.attached)} files go with your first message (/file lists them)")

    def toolbar(self) -> list[tuple[str, str]]:
        conversation, reply = self.conversation, self.conversation.last
        engine = conversation.engine
        state = engine.state()  # never waits: the model may still be loading
        if state == "ready":
            used, total = conversation.context_used or 0, engine.n_ctx
            where = f"{engine.device} · ctx {used:,}/{total:,} ({100 * used // max(total, 1)}%)"
        else:
            where = "no model: /model NAME" if state == "failed" else "loading the model…"
        speed = f" · {reply.tokens_per_s:.1f} tok/s" if reply is not None and reply.tokens_per_s else ""
        files = ""
        if self.attached:
            cost = self.attached_tokens() if state == "ready" else None
            files = f" · +{len(self.attached)} file{'s' if len(self.attached) > 1 else ''}" + (
                f" ({cost:,} tokens: ctx {(conversation.context_used or 0) + cost:,}/{engine.n_ctx:,} with them)"
                if cost is not None else "")
        return [("class:bottom-toolbar",
                 f" {self.loaded.spec.name} · {self.loaded.engine_name} · {where}{speed}{files} ")]

    def attached_tokens(self) -> int:
        """What the attached files add to the next message, counted once each."""
        for f in self.attached:
            if f.tokens is None:
                f.tokens = self.conversation.backend.count(f.block())
        return sum(f.tokens or 0 for f in self.attached)

    async def _engine_news(self) -> None:
        """While the prompt waits for input: tell what the loading engine settles on
        (its notes, a failure, a crash while loading) above the prompt when it happens."""
        engine = self.conversation.engine
        while True:
            state = engine.state()
            if state == "ready":
                if any(n not in self._told for n in engine.notes):
                    await run_in_terminal(self.tell_notes)
                get_app().invalidate()  # the toolbar shows the device and context now
                return
            if state != "loading":
                try:
                    self.conversation.ready()  # raises the failure, or the crash (once)
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
        for note in self.conversation.engine.notes:
            if note not in self._told:
                self._told.add(note)
                self.note(note)

    # ------------------------------------------------------------ turns
    def ask(self, text: str) -> None:
        """A question that is not sent (the model did not load, the user stopped waiting
        for it, it does not fit the window) goes back into the input, for editing. While
        a question is being edited (/edit), the text is its new version."""
        editing, self.editing = self.editing, None
        message = attachments.message(self.attached, text) if self.attached else text
        try:
            chunks = (self.conversation.edit(editing, message, self.cancelled) if editing
                      else self.conversation.send(message, self.cancelled))
            sent = self.show_reply(chunks)
        except ChattermError:
            if self._asked(message):  # the reply failed, the question (and its files) stays
                self.attached = []
            self.prefill, self.editing = text, editing
            raise
        if sent:
            self.attached = []
        else:
            self.prefill, self.editing = text, editing

    def _asked(self, message: str) -> bool:
        last = next((m for m in reversed(self.conversation.messages) if m["role"] == "user"), None)
        return last is not None and last["content"] == message

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

    def wait_for_engine(self, loaded: Loaded) -> bool:
        """Wait for `loaded`'s model to load, with a spinner; False at Ctrl-C."""
        engine = loaded.backend.engine
        if engine.state() == "ready":
            return True
        with ctrl_c_cancels() as flag, \
                self.console.status(f"loading {loaded.spec.name}… (Ctrl-C to stop waiting)"):
            try:
                return bool(engine.wait_ready(flag))
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
        new one, `keep_system`, starts with the current system prompt and settings)."""
        conversation = self.conversation
        if keep_system and not session.messages:
            session.messages = [dict(m) for m in conversation.messages[:1] if m["role"] == "system"]
            session.sampling = dict(conversation.overrides)
        self.session = session
        self.code_blocks = []
        conversation.replace_messages(session.messages)
        conversation.overrides = dict(session.sampling)

    def save(self, path: Any = None) -> Any:
        session = self.session
        session.messages = self.conversation.messages
        session.sampling = dict(self.conversation.overrides)
        session.model, session.engine = self.loaded.spec.name, self.loaded.engine_name  # a crash may switch engines
        return session.save(path)

    def replay(self) -> None:
        for m in self.conversation.messages:
            if m["role"] == "user":
                self.console.print(Text("› " + clean(m["content"]), style="bold"))
            elif m["role"] == "assistant":
                self.show_message(m)
        self.note(f"session {self.session.name}: {len(self.conversation.messages)} messages")

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
        """The new model replaces the old one only once it has loaded: a model that
        fails to load, or a Ctrl-C while it loads, leaves the chat as it was."""
        options = dataclasses.replace(self.options, model=name)
        loaded = self.load(options)
        try:
            ready = self.wait_for_engine(loaded)
        except BaseException:
            loaded.backend.engine.close()
            raise
        if not ready:
            loaded.backend.engine.close()
            self.note(f"(stopped loading {loaded.spec.name}; still chatting with {self.loaded.spec.name})")
            return
        old = self.loaded
        self.loaded, self.options = loaded, options
        self.conversation.switch(loaded.backend, loaded.defaults)
        old.backend.engine.close()
        self.note(f"now chatting with {loaded.spec.name} on {loaded.engine_name} ({loaded.backend.engine.device})")
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


def _conversation(loaded: Loaded, options: RunOptions, session: sessions.Session) -> Conversation:
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
             color: str = "auto", loaded: Loaded | None = None, conversation: Conversation | None = None,
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
    repl.banner()
    if resumed:
        repl.replay()
    repl.run()
    repl.conversation.engine.close()
    if any(m["role"] != "system" for m in repl.conversation.messages):
        repl.save()
        print(f"session saved: {repl.session.path} (chatterm -c resumes it)", file=sys.stderr)
