"""What a conversation needs from whatever answers it: a local engine with its chat
template and prompt cache (`local.LocalBackend`) or an OpenAI-compatible server
(`remote.RemoteBackend`). The conversation owns the messages; a backend measures a
prompt, streams a reply to it, and remembers what it evaluated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from chatterm.conversation.reply import Reply
from chatterm.settings import Decoding

P = TypeVar("P")  # a backend's prompt: token ids, or a request body


class Runner(Protocol):
    """What front ends ask of whatever runs the model, through a backend: a local
    `Engine` (isolated in its worker) or a server (`engines.remote.RemoteEngine`)."""

    name: str  # "llama.cpp", "ctransformers", "remote"
    device: str  # for people: "CPU", "CUDA (30/30 layers)", the server's address
    notes: list[str]  # settings chosen for this machine, and why

    def state(self) -> str: ...

    def wait_ready(self, cancelled: Callable[[], bool] = ...) -> bool: ...

    def close(self) -> None: ...


class Backend(Protocol[P]):
    @property
    def engine(self) -> Runner:
        """What runs the model."""
    @property
    def size_note(self) -> str:
        """How prompt sizes were counted, for the context-overflow error."""

    @property
    def tool_family(self) -> Any:
        """The tool-call syntax the model's template teaches (`tools.markup.Family`), or
        None (a remote model: the server parses calls)."""

    @property
    def n_ctx(self) -> int: ...

    def measure(self, messages: list[dict], tail: str | None, think: bool | None = None,
                tools: list[dict] | None = None) -> tuple[int, P]:
        """(size in tokens, prompt) of `messages` ready for a reply; `tail` (when
        continuing a reply) is the start of that reply; `think` switches a reasoning
        model's thinking on or off where its template or server can (None: its default);
        `tools`: the JSON Schemas of the tools offered (None: tools off)."""

    def count(self, text: str) -> int:
        """Tokens in `text` alone (what a file added to a message costs)."""

    @property
    def think_switch(self) -> bool:
        """Whether `think` has any effect for this model."""

    def reply(self, prompt: P, sampling: Decoding, cancelled: Callable[[], bool]) -> Reply:
        """A reply to `prompt`, streamed as it is iterated."""

    def settle(self, prompt: P, reply: Reply) -> int:
        """The reply ended (in any way): remember what was evaluated; returns the tokens
        the conversation now fills in the context window."""


def with_tools(messages: list[dict]) -> bool:
    """Whether tool calls or results are in `messages` (they need `tools.prompting`'s
    shapes rather than `wire`'s, even once tools are off)."""
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def wire(messages: list[dict]) -> list[dict[str, str]]:
    """Messages as templates and servers take them: role and content only."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]
