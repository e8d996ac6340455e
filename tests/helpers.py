"""Helpers shared by test modules (test modules never import each other)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pexpect
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from chatterm import loader, sessions
from chatterm.conversation import Conversation
from chatterm.loader import Model, RunOptions
from chatterm.ui import terminal
from chatterm.ui.repl import Repl


def run(*args: str, stdin: bytes | None = b"", timeout: float = 120, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `chatterm`, as a user runs it, to completion (`env`: variables added)."""
    env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "chatterm", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=env, cwd=cwd)


def one_line_error(r: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one `chatterm: error:` line of a run that failed with `code`, and no traceback."""
    err = r.stderr.decode()
    lines = [line for line in err.splitlines() if line.startswith("chatterm: error:")]
    assert r.returncode == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class Terminal(pexpect.spawn):
    """The real `chatterm` in a pseudo terminal (2 threads, 30x100 unless told)."""

    def __init__(self, *args: str, dimensions: tuple[int, int] = (30, 100), threads: bool = True,
                 env: dict | None = None, **kw):
        """`env`: variables added (`scripted_engine.write_script`'s, say)."""
        # No cursor-position requests: pexpect never answers them, and prompt_toolkit
        # would wait a second for an answer at every prompt.
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(dimensions[1]), "LINES": str(dimensions[0]),
               "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})}
        super().__init__(sys.executable, ["-m", "chatterm", *(["--threads", "2"] if threads else []), *args],
                         env=env, encoding="utf-8", timeout=60, dimensions=dimensions, **kw)
        self.logfile_read = io.StringIO()  # everything it wrote, for `transcript`

    @property
    def transcript(self) -> str:
        return self.logfile_read.getvalue()

    def ask(self, question: str, answer: str) -> None:
        """Send `question`, wait for `answer` (a pattern) and for the prompt to be back."""
        self.sendline(question)
        self.expect(answer)
        self.expect("›")

    def quit(self) -> None:
        self.sendline("/exit")
        self.expect(pexpect.EOF)


def drive(keys: str, loaded: Model, session: sessions.Session | None = None, load=None,
          options: RunOptions | None = None, width: int = 100) -> tuple[Repl, str]:
    """The REPL on `loaded`, fed `keys` through prompt_toolkit's pipe input, until Ctrl-D:
    (the Repl, what it printed, plain, `width` columns)."""
    import io

    out = io.StringIO()
    console = terminal.console(out, force_terminal=False, width=width)
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        inp.send_text(keys + "\x04")  # Ctrl-D on the empty prompt quits
        repl = Repl(options or RunOptions(), session or sessions.Session(name="test"), loaded=loaded,
                    console=console, input=inp, output=DummyOutput(), **({"load": load} if load else {}))
        repl.run()  # ends at EOF of the pipe, like Ctrl-D
        repl.release_session()
    return repl, out.getvalue()


def session_files() -> list[Path]:
    return sorted(sessions.sessions_dir().glob("*.json"))


def converse(options: RunOptions) -> Conversation:
    """A new conversation as the program starts one (`loader.load`, then `conversation`)."""
    return loader.conversation(loader.load(options), options)


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (zombies, dead but not yet reaped, left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def _template_worker(pid: int) -> bool:
    try:
        return b"template_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def worker_pid(chatterm_pid: int, not_pid: int | None = None, timeout: float = 30) -> int:
    """The engine worker of the chatterm process `chatterm_pid` (another than `not_pid`;
    never the chat-template worker, which is a child too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [p for p in children(chatterm_pid) if p != not_pid and not _template_worker(p)]
        if workers:
            return workers[0]
        time.sleep(0.01)
    raise AssertionError(f"no engine worker under pid {chatterm_pid}")


def raw_escapes(output: str | bytes) -> list[str]:
    """The hostile escape sequences (the adversarial tests' EVIL) that arrived raw."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    return [s for s in ("\x1b]0;PWN", "\x07", "\x1b[2J", "\x9b", "\x1b[31;1m") if s in text]


def witness(delay_s: float, path: Path) -> subprocess.Popen:
    """A process that touches `path` `delay_s` seconds from now, the way a tool's
    program would: started after the program under test, it marks the moment by which
    that program would have done the same (`happened_by`)."""
    return subprocess.Popen(["bash", "-c", f'sleep {delay_s}; touch "$1"', "witness", str(path)])


def happened_by(marker: Path, timeout: float = 60) -> None:
    """Wait until `marker` exists (a `witness` touched it): what did not happen by now
    never will."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.02)
