"""Chat templates: the model file's own Jinja template or a named preset, rendered in
Jinja's immutable sandbox.

Templates from model files are untrusted code (CVE-2024-34359 was remote code execution
through exactly this path in llama-cpp-python), so nothing is rendered outside
`ImmutableSandboxedEnvironment`; a template that reaches for Python internals raises
TemplateError instead of running. Those templates also render in a process of their
own (`template_worker`), under a time, output and memory budget: a template that loops
for ever or writes a gigabyte is stopped with a TemplateError, and the chat goes on.
chatterm's own presets render in this process.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from typing import Any

from chatterm import child
from chatterm.conversation import template_worker
from chatterm.errors import TemplateError
from chatterm.models.chat_templates import CHOICES, PRESETS

_PRESET_SOURCES = frozenset(PRESETS.values())


TIME_S = 2.0  # a render may take this long, plus a second per MB of messages
START_S = 60.0  # the worker may take this long to start (a loaded machine), not counted in TIME_S
OUTPUT = 16 << 20  # characters a render may produce, plus 4 per character of its request


class Renderer:
    """The template worker process (`template_worker`): started at the first render
    of a template from a model file, killed and started again when a render takes
    longer than its time budget. One render at a time."""

    def __init__(self) -> None:
        self._process: Any = None
        self._started = False  # its "ready" line was read
        self._lock = threading.Lock()

    def render(self, source: str, context: dict[str, Any]) -> dict[str, str]:
        body = json.dumps({"source": source, "context": context})  # ASCII: nothing fails to encode
        budget = OUTPUT + 4 * len(body)
        request = body[:-1] + f', "budget": {budget}}}'
        limit = TIME_S + len(request) / 1e6
        with self._lock:
            for attempt in (1, 2):  # a worker that died since the last render is started again once
                try:
                    process = self._start()
                    process.stdin.write(request.encode("ascii") + b"\n")
                    process.stdin.flush()
                    line = self._read_line(process, time.monotonic() + limit, 6 * budget + 4096)
                except BrokenPipeError:
                    self.stop()
                    if attempt == 2:
                        return {"error": "failed", "message": "the template worker could not start"}
                    continue
                if line is None:
                    self.stop()
                    return {"error": "slow", "message": f"it took more than {limit:.0f} s"}
                try:
                    return json.loads(line)
                except ValueError:
                    self.stop()
                    return {"error": "failed", "message": "the template worker failed"}
        raise AssertionError("unreachable")

    def warm(self) -> None:
        """Start the worker now (it imports Jinja while the model loads); its "ready"
        line is read at the first render."""
        with self._lock:
            self._spawn()

    def _spawn(self) -> None:
        if self._process is None or self._process.poll() is not None:
            # Its own session: the terminal's Ctrl-C and hangup are the chat's to handle
            # (the worker dies with the chat: PR_SET_PDEATHSIG).
            self._process = subprocess.Popen(child.command("chatterm.conversation.template_worker"),
                                             stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             start_new_session=True)
            self._started = False

    def _start(self) -> Any:
        """The worker, started and ready (its "ready" line read: from here on a render's
        time is its own, not the worker's start on a loaded machine)."""
        self._spawn()
        if not self._started:
            if self._read_line(self._process, time.monotonic() + START_S, 4096) != b'{"ready": true}\n':
                self.stop()
                raise BrokenPipeError("the template worker did not start")
            self._started = True
        return self._process

    @staticmethod
    def _read_line(process: Any, deadline: float, most: int) -> bytes | None:
        """The answer, or None when the worker took too long (or sent too much)."""
        fd = process.stdout.fileno()
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or size > most:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b""  # it died: not JSON, reported as a failure
            chunks.append(chunk)
            size += len(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


_renderer = Renderer()


class ChatTemplate:
    """Renders a list of {role, content} messages into the prompt text."""

    def __init__(self, source: str, *, name: str, bos_token: str = "", eos_token: str = ""):
        self.name = name
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.trusted = source in _PRESET_SOURCES  # chatterm's own: rendered here

    @property
    def think_switch(self) -> bool:
        """The template can turn a reasoning model's thinking off (Qwen3's switch)."""
        return "enable_thinking" in self.source

    @property
    def tool_family(self) -> Any:
        """The tool-call syntax the template teaches (`tools.markup.Family`), or None."""
        from chatterm.tools.markup import family_of

        return family_of(self.source)

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
               think: bool | None = None, tools: list[dict] | None = None) -> str:
        switch = {} if think is None else {"enable_thinking": think}
        offered = {"tools": tools} if tools else {}
        context = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                   "bos_token": self.bos_token, "eos_token": self.eos_token, **switch, **offered}
        if self.trusted:
            answer = template_worker.render({"source": self.source, "context": context, "budget": 1 << 62})
        else:
            answer = _renderer.render(self.source, context)
        if "text" in answer:
            return answer["text"]
        kind, message = answer.get("error"), answer.get("message", "")
        if kind == "syntax":
            raise TemplateError(f"chat template does not parse: {message}")
        if kind == "sandbox":
            raise TemplateError(f"chat template {self.name!r} tried to leave the sandbox ({message}); "
                                "choose a preset with --template")
        if kind == "raised":
            raise TemplateError(message)
        if kind == "slow":
            raise TemplateError(f"chat template {self.name!r} was stopped: {message} to render "
                                "(a loop without end?); choose a preset with --template")
        raise TemplateError(f"chat template {self.name!r} failed: {message}")


def warm(choice: str) -> None:
    """A template from the model file will render: start its worker early."""
    if choice == "gguf":
        _renderer.warm()


def check(choice: str) -> str:
    """`choice` if it names a template ('gguf' or a preset), else TemplateError."""
    if choice not in CHOICES:
        raise TemplateError(f"unknown chat template {choice!r}; choose {', '.join(CHOICES)}")
    return choice


def resolve(choice: str, file_template: str | None, *, bos: str, eos: str) -> ChatTemplate:
    """`choice` is 'gguf' (the file's own template, chatml if it has none) or a preset."""
    if check(choice) == "gguf":
        if file_template:
            return ChatTemplate(file_template, name="model file", bos_token=bos, eos_token=eos)
        choice = "chatml"
    return ChatTemplate(PRESETS[choice], name=choice, bos_token=bos, eos_token=eos)
