"""A conversation's backend on an OpenAI-compatible server (`RemoteEngine`).

The server applies its own chat template; chatterm sends messages and counts tokens
only to keep the conversation inside the context window (exact counts from the
server's tokenize endpoint when it has one, else a documented estimate). Continuing a
reply goes through the completions API with the conversation rendered by the entry's
chat template: the chat API has no portable way to extend an answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chatterm.conversation import thinking
from chatterm.conversation.backend import wire, with_tools
from chatterm.conversation.reply import Finish, Reply
from chatterm.conversation.templates import ChatTemplate
from chatterm.conversation.thinking import Thought
from chatterm.engines.remote.engine import RemoteEngine
from chatterm.engines.remote.errors import RemoteError
from chatterm.engines.remote.events import CallDelta, End
from chatterm.errors import EngineError
from chatterm.settings import Decoding

MESSAGE_OVERHEAD = 4  # role and separators per message, as OpenAI's own counting adds
MAX_CALL_BYTES = 8 << 20  # of a reply's streamed tool-call arguments
MAX_NAME = 256  # characters of a streamed call's name (and id): no tool has a longer one
MAX_CALLS = 64  # calls one reply may stream


@dataclass
class Request:
    path: str  # "chat/completions" or "completions"
    body: dict[str, Any]  # its messages, or its prompt
    size: int  # tokens


class RemoteReply(Reply):
    def __init__(self, engine: RemoteEngine, request: Request, payload: dict[str, Any],
                 cancelled: Callable[[], bool]):
        prompt = request.body.get("prompt")  # the completions API: a prompt we rendered
        super().__init__(request.size, thinking=isinstance(prompt, str) and thinking.opened(prompt))
        self.engine, self.request, self.payload, self.cancelled = engine, request, payload, cancelled
        self._server_calls: dict[int, dict[str, Any]] = {}
        self._call_bytes = 0

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        end: End | None = None
        try:
            for item in self._stream():
                if isinstance(item, End):
                    end = item
                    continue
                if isinstance(item, CallDelta):
                    self._gather(item)
                    continue
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - start
                # Servers send about one token per event; n_tokens counts events.
                yield from self._take(Thought(item.text) if item.reasoning else item.text)
            yield from self._end()
            self._parsed_calls()
            if end is None:  # the stream stopped without its end: cancelled
                self.finish = Finish.CANCELLED
            else:
                self.finish = Finish.LENGTH if end.finish_reason == "length" else Finish.EOG
        except RemoteError as e:
            self.finish = Finish.ERROR
            if self.request.path == "completions" and "HTTP 404" in str(e):
                raise RemoteError(f"{self.engine.base_url} has no completions API (HTTP 404): /continue "
                                  "needs it on a remote model") from None
            raise
        except (KeyboardInterrupt, GeneratorExit):
            self.finish = Finish.CANCELLED
            raise
        finally:
            self.elapsed_s = time.perf_counter() - start


    def _stream(self) -> Iterator[Any]:
        """The server's stream; one that refuses a JSON Schema before its first event
        is asked again for any JSON object (`json_object`), and the schema is checked
        on the answer instead."""
        started = False
        try:
            for item in self.engine.stream(self.request.path, self.payload, self.cancelled):
                started = True
                yield item
        except RemoteError as e:
            format_ = self.payload.get("response_format") or {}
            if started or format_.get("type") != "json_schema" or not any(f"HTTP {c}" in str(e) for c in (400, 422)):
                raise
            self.payload = {**self.payload, "response_format": {"type": "json_object"}}
            self.notes.append("the server takes no JSON Schema: it was asked for a JSON object, and the "
                              "answer checked against the schema")
            yield from self.engine.stream(self.request.path, self.payload, self.cancelled)

    def _gather(self, piece: CallDelta) -> None:
        """A piece of a call the server parsed, joined to the call at its index."""
        if piece.index not in self._server_calls and len(self._server_calls) >= MAX_CALLS:
            raise RemoteError(f"{self.engine.base_url}: more than {MAX_CALLS} tool calls in one reply; refused")
        call = self._server_calls.setdefault(piece.index, {"id": "", "name": "", "arguments": []})
        call["id"] = call["id"] or piece.id[:MAX_NAME]
        call["name"] += piece.name
        if len(call["name"]) > MAX_NAME:
            raise RemoteError(f"{self.engine.base_url}: a tool call's name longer than {MAX_NAME} characters; refused")
        self._call_bytes += len(piece.arguments)
        if self._call_bytes > MAX_CALL_BYTES:
            raise RemoteError(f"{self.engine.base_url}: a tool call longer than {MAX_CALL_BYTES >> 20} MiB; refused")
        call["arguments"].append(piece.arguments)

    def _parsed_calls(self) -> None:
        from chatterm.tools.calls import call_of

        for _, call in sorted(self._server_calls.items()):
            arguments = "".join(call["arguments"])
            parsed = call_of({"name": call["name"], "arguments": arguments}, arguments)
            if call["id"]:
                parsed.id = call["id"]
            self.calls.append(parsed)
        self._server_calls = {}


class RemoteBackend:
    def __init__(self, engine: RemoteEngine, stop: list[str] | None = None,
                 template: ChatTemplate | None = None):
        self.engine = engine
        self.stop = list(stop or [])
        self.template = template  # only for /continue through the completions API

    @property
    def n_ctx(self) -> int:
        return self.engine.n_ctx

    @property
    def size_note(self) -> str:
        return "" if self.engine.counts_exactly else " (estimated: the server has no tokenize endpoint)"

    def count(self, text: str) -> int:
        return self.engine.count_tokens(text)

    think_switch = True  # servers take chat_template_kwargs (those that do not ignore it)

    @property
    def tool_family(self) -> Any:
        """Servers without a tool parser pass calls on as text, in any family's syntax."""
        from chatterm.tools.markup import ANY

        return ANY

    def measure(self, messages: list[dict], tail: str | None, think: bool | None = None,
                tools: list[dict] | None = None) -> tuple[int, Request]:
        if tail is None:
            if tools or with_tools(messages):
                from chatterm.tools import prompting

                body = prompting.openai(messages)
            else:
                body = wire(messages)
            size = sum(self.engine.count_tokens(m["content"] or "") + MESSAGE_OVERHEAD for m in body)
            extra: dict[str, Any] = {} if think is None else {"chat_template_kwargs": {"enable_thinking": think}}
            if tools:
                extra["tools"] = tools
                size += self.engine.count_tokens(json.dumps(tools))
            return size, Request("chat/completions", {"messages": body, **extra}, size)
        if self.template is None:
            raise EngineError("/continue on a remote model needs its chat template: set template = "
                              "\"chatml\" (or the model's preset) in its models.toml entry or pass --template")
        prompt = self.template.render(wire(messages), add_generation_prompt=True, think=think) + tail
        size = self.engine.count_tokens(prompt)
        return size, Request("completions", {"prompt": prompt}, size)

    def reply(self, prompt: Request, sampling: Decoding, cancelled: Callable[[], bool]) -> Reply:
        payload: dict[str, Any] = {
            "model": self.engine.model, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": max(1, min(sampling.max_tokens, self.n_ctx - prompt.size)), **prompt.body}
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if sampling.call_required and "tools" in prompt.body:
            payload["tool_choice"] = "required"
        if sampling.json_schema is not None:
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": sampling.json_schema, "strict": True}}
        if self.stop:
            payload["stop"] = self.stop[:4]  # the API's limit
        return RemoteReply(self.engine, prompt, payload, cancelled)

    def settle(self, prompt: Request, reply: Reply) -> int:
        return prompt.size + reply.n_tokens
