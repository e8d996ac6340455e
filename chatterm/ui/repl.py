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
import functools
import sys
from collections.abc import Callable
from typing import Any

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app, run_in_terminal
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from rich.console import Console

from chatterm import attachments, loader, sessions
from chatterm.attachments import Attachment
from chatterm.conversation import Conversation, Turn
from chatterm.errors import ChattermError, ContextOverflowError
from chatterm.loader import Model, RunOptions
from chatterm.records import Message
from chatterm.ui import commands, editor, terminal
from chatterm.ui.after_reply import after_reply
from chatterm.ui.input_history import open_history
from chatterm.ui.interrupt import CancelFlag, ctrl_c_cancels, ended_by_signals
from chatterm.ui.prompt_keys import SlashCompleter, key_bindings
from chatterm.ui.render import CodeBlock, make_console
from chatterm.ui.reply_view import ReplyView
from chatterm.ui.session_keeper import SessionKeeper
from chatterm.ui.toolbar import Toolbar
from chatterm.ui.transcript import Transcript
from chatterm.units import count

WATCH_S = 0.1  # how often the prompt looks at a loading engine
PROMPT_FAILURES = 3  # the prompt failing this often in a row ends the chat (saved) rather than spin


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
        self.transcript = Transcript(self.console)
        self.loaded = loaded or load(options)
        answered = conversation is not None  # -i: a one-shot answer came first
        if conversation is None:
            conversation = loader.conversation(self.loaded, options, session)
        elif conversation.session is not session:  # -i: the one-shot turn goes on in this session
            conversation.move_to(session)
        self.conversation = conversation
        self.keeper = SessionKeeper(conversation, self.choose, self.note, self.error)
        self.prefill = ""
        self.editing: int | None = None  # the question being edited in the input (/edit)
        self.attached: list[Attachment] = list(attached or [])  # files for the next message (/file, -f)
        # Engine notes already shown (by the one-shot answer before the chat, with -i).
        self._told: set[str] = set(self.loaded.notes) if answered and sys.stderr.isatty() else set()
        self._started = False  # a first input was handled: the chat is under way
        self.ending = CancelFlag()  # SIGTERM or SIGHUP arrived: the chat ends after this input
        self.toolbar = Toolbar(self)
        self.reply_view = ReplyView(self.console, self.note, self._io)
        self.mcp: Any = None  # the MCP servers' hub (`ui.mcp_servers`), once started
        self.history = open_history()
        self.prompt: PromptSession[str] = PromptSession(
            history=self.history, auto_suggest=AutoSuggestFromHistory(),
            completer=SlashCompleter(), complete_while_typing=True,
            key_bindings=key_bindings(), bottom_toolbar=self.toolbar, multiline=False,
            enable_open_in_editor=True, input=input, output=output)

    @property
    def session(self) -> sessions.Session:
        """The conversation's: the REPL holds no copy."""
        return self.conversation.session

    @property
    def read_only(self) -> bool:
        return self.keeper.read_only

    @property
    def code_blocks(self) -> list[CodeBlock]:
        return self.transcript.code_blocks

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        """Read and handle inputs until Ctrl-D, /exit, SIGTERM or SIGHUP. Whatever goes
        wrong with one input is one line, and the prompt comes back."""
        sessions.clean_leftovers()
        if not self.keeper.held and not self.begin():
            return
        if self.mcp is None:
            from chatterm.ui import mcp_servers

            self.mcp = mcp_servers.start(self.conversation, self.options.mcp, self.note)
        failures = 0  # of the prompt in a row
        while not self.ending():
            marker = f"edit {self.editing}› " if self.editing else "› "
            try:
                text = self.prompt.prompt([("class:prompt", marker)], default=self.prefill,
                                          pre_run=self._watch_engine)
            except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line (and an edit)
                self.prefill, self.editing, self.toolbar.refused = "", None, ""
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
                self.toolbar.settle()
            failures = 0
            self._tell_history_problem()
            self.prefill, self.toolbar.refused = "", ""
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
        """The chat is over: the counting thread and the engine stopped, the session
        saved and let go (`SessionKeeper.close`)."""
        try:
            self.toolbar.close()
            if self.mcp is not None:
                self.mcp.close(self.note)  # the servers' processes end with the chat
            self.save_cache()
            self.loaded.close()
        finally:
            self.keeper.close()

    def release_session(self) -> None:
        """Let another chat open this session (the chat is over)."""
        self.keeper.release()

    def banner(self) -> None:
        model = self.loaded
        self.note(f"chatterm · {model.spec.name} on {model.engine_name} · "
                  f"session {self.session.name}{' (read-only)' if self.read_only else ''} · "
                  "/help for commands, Ctrl-D to quit")
        if self.attached:
            self.note(f"{count(len(self.attached), 'file')} go with your first message (/file lists them)")
        if model.adapters:
            on = ", ".join(a.text for a in model.adapters)
            self.note(f"LoRA adapters: {on} · /lora switches them, /retry --base compares with the base model")

    def attached_tokens(self) -> int:
        """What the attached files add to the next message, counted once each."""
        for f in self.attached:
            if f.tokens is None:
                f.tokens = self.loaded.count(f.block())
        return sum(f.tokens or 0 for f in self.attached)

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
                try:
                    await asyncio.wrap_future(self.toolbar.count())
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
                        await run_in_terminal(functools.partial(self.error, message))
                get_app().invalidate()
                if state == "failed":
                    return
            await asyncio.sleep(WATCH_S)

    def _watch_engine(self) -> None:
        app = get_app()
        app.create_background_task(self._engine_news())
        if self.mcp is not None:
            app.create_background_task(self._mcp_news())

    async def _mcp_news(self) -> None:
        """While the prompt waits: what the MCP servers settle on (up, with their tools;
        failed, and why), above the prompt when it happens."""
        while True:
            for line in self.mcp.news():
                await run_in_terminal(functools.partial(self.note, line))
            await asyncio.sleep(WATCH_S * (5 if self.mcp.settled() else 1))

    def tell_notes(self) -> None:
        from chatterm.ui.hints import think_ignored, tools_as_text

        notes = self.loaded.notes
        if self.conversation.think_ignored:
            notes.append(think_ignored("/set think"))
        if self.conversation.toolbox and self.loaded.tool_syntax is None:
            notes.append(tools_as_text())
        if self.mcp is not None:
            notes += self.mcp.news()
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
        turn: Turn | None = None
        try:
            turn = (self.conversation.edit(editing, message) if editing else self.conversation.send(message))
            self.show_reply(turn)
        except ChattermError as e:
            if turn is not None and turn.recorded:  # with the failed reply: /retry
                self.attached = []
            else:
                self.prefill, self.editing = text, editing
                if isinstance(e, ContextOverflowError):
                    # Back in the input, which may be taller than the screen: the
                    # toolbar keeps saying why until the next input.
                    self.toolbar.refused = f"not sent: {' '.join(str(e).split())}; /ctx N sets the window"
            raise
        if turn.recorded:
            self.attached = []
        else:  # the user stopped waiting for the model: nothing was sent
            self.prefill, self.editing = text, editing

    def compose(self) -> str:
        return editor.compose()

    def begin_edit(self, question: int, text: str) -> None:
        self.prefill, self.editing = text, question
        self.note(f"editing question {question}: Enter asks it again (the old one stays: /alt), "
                  "Ctrl-X Ctrl-E opens $EDITOR, Ctrl-C cancels")

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

    def show_reply(self, turn: Turn) -> None:
        """Render a turn's reply as it streams (after waiting for the model to load;
        if the user stops waiting, the turn is left unsent: `turn.recorded` is False),
        then say how it ended (`after_reply`)."""
        if not self.wait_for_engine(self.loaded):
            self.note("(stopped waiting for the model)")
            return
        self.tell_notes()
        failure = self.reply_view.show(turn, self.conversation)
        self.transcript.code_blocks = self.reply_view.code_blocks
        failed = None
        if failure is not None:
            kept = turn.reply is not None and turn.reply.text
            failed = str(failure.adding("; the reply so far is kept: /continue resumes it" if kept
                                        else "; /retry asks again"))
        with ctrl_c_cancels() as stop:  # a schema's pattern may take long: Ctrl-C ends the check
            said = after_reply(turn, self.conversation.schema, failed, stop)
        for line in said:
            if line.kind == "error":
                self.error(line.text)
            elif line.once:
                self._once(line.text, self.note)
            else:
                self.note(line.text)

    # ------------------------------------------------------------ sessions
    def open_session(self, session: sessions.Session, keep_system: bool = False) -> None:
        """`session` in place of the current one, with its messages and settings (a
        new one, `keep_system`, starts with the current system prompt and settings).
        One open in another chat is continued as a copy, or read, as the user chooses."""
        conversation = self.conversation
        claimed = self.claim(session)
        if claimed is None:
            raise ChattermError(f"session {session.name} not opened; still in {self.session.name}")
        self.transcript.code_blocks = []
        self.save_cache()  # the session left resumes without reading its history again
        conversation.open(claimed, keep_system)

    def save_cache(self) -> None:
        """The model's cache saved with the session (`sessions.kv_cache`); a failure
        only costs the next resume its speed."""
        if not self.session.name:
            return
        try:
            self.loaded.save_cache(self.session.name)
        except Exception:  # the disk, the engine: never a reason to lose the chat's end
            pass

    def claim(self, session: sessions.Session | None = None) -> sessions.Session | None:
        return self.keeper.claim(session)

    def begin(self) -> bool:
        return self.keeper.begin()

    def choose(self, question: str, letters: str) -> str:
        """One of `letters` (the first is the default; the last at the end of input)."""
        from chatterm.ui.prompt_keys import one_key

        try:  # one key answers, without Enter; Enter alone is the default
            return str(PromptSession(**self._io).prompt(f"{question} ", key_bindings=one_key(letters, letters[0])))
        except (EOFError, KeyboardInterrupt):
            return letters[-1]

    def save(self, path: Any = None) -> Any:
        return self.keeper.save(path)

    def replay(self) -> None:
        self.transcript.replay(self.session)

    def show_question(self, text: str) -> None:
        self.transcript.question(text)

    def show_message(self, message: Message) -> None:
        self.transcript.message(message)

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
            answer: str = PromptSession(**self._io).prompt(f"{question} [Y/n] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("", "y", "yes")

    def pull(self, name: str) -> None:
        """Download a catalogue model, with the progress display, into the models folder."""
        from chatterm.ui.manage import pull_model

        pull_model(name, self.console.file, ask=False)

    # ------------------------------------------------------------ output
    def note(self, text: str) -> None:
        self.transcript.note(text)

    def error(self, text: str) -> None:
        self.transcript.error(text)


choose_session = sessions.choose  # the session the chat opens in


def run_repl(options: RunOptions, *, session: str | None = None, resume: bool = False,
             color: str = "auto", loaded: Model | None = None, conversation: Conversation | None = None,
             tty_input: bool = False, attached: list[Attachment] | None = None,
             chosen: sessions.Session | None = None) -> None:
    """`chosen`: the session, when the caller chose it (and its model) already."""
    if chosen is None:
        chosen = choose_session(session, resume)
        options, note = loader.session_model(options, chosen)
        if note:
            click.echo(f"chatterm: {note}", err=True)
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
