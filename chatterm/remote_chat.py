"""A conversation with a model on an OpenAI-compatible server (`RemoteEngine`): the
same surface as `chatterm.chat.Chat` (messages, send, continue_reply, last, sampling,
on_change), so the REPL, the renderer and sessions work unchanged.

The server applies its own chat template; chatterm sends messages and counts tokens
only to keep the conversation inside the context window (exact counts from the
server's tokenize endpoint when it has one, else a documented estimate).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from chatterm import context_window, generation
from chatterm.engines.base import Sampling
from chatterm.engines.remote_engine import RemoteEngine, RemoteError
from chatterm.errors import EngineError
from chatterm.templates import ChatTemplate

MESSAGE_OVERHEAD = 4  # role and separators per message, as OpenAI's own counting adds


class RemoteReply:
    """What `generation.Generation` tells about a finished reply, for a remote one."""

    def __init__(self, prompt_tokens: int):
        self.prompt = range(prompt_tokens)  # only its length is used
        self.chunks: list[str] = []
        self.finish: str | None = None
        self.first_token_s: float | None = None
        self.elapsed_s = 0.0

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def tokens(self) -> range:
        return range(len(self.chunks))  # servers send about one token per event

    @property
    def tokens_per_s(self) -> float:
        return generation.decode_rate(len(self.chunks), self.elapsed_s, self.first_token_s)


class RemoteChat:
    def __init__(self, engine: RemoteEngine, sampling: Sampling, stop: list[str] | None = None,
                 system: str | None = None, template: ChatTemplate | None = None):
        self.engine = engine
        self.sampling = sampling
        self.stop = list(stop or [])
        self.template = template  # only for /continue through the completions API
        self.messages: list[dict] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.last: RemoteReply | None = None
        self.dropped = 0
        self.context_used = 0
        self.on_change: Callable[[], None] = lambda: None

    def engine_ready(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        return True  # the server loaded its model; errors come with the first request

    # ------------------------------------------------------------ context
    def _tokens(self, messages: list[dict]) -> int:
        return sum(self.engine.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)

    def fit(self, messages: list[dict]) -> tuple[list[dict], int]:
        """The newest messages that fit with room for a reply, and their size in tokens."""
        def measure(kept: list[dict]) -> tuple[int, tuple[list[dict], int]]:
            wire = [{"role": m["role"], "content": m["content"]} for m in kept]
            size = self._tokens(wire)
            return size, (wire, size)

        n_ctx = self.engine.n_ctx
        prompt, self.dropped = context_window.fit(
            messages, measure, n_ctx, context_window.reply_reserve(n_ctx, self.sampling.max_tokens),
            size_note="" if self.engine.counts_exactly else " (estimated: the server has no tokenize endpoint)")
        return prompt

    def _payload(self, room: int) -> dict[str, Any]:
        s = self.sampling
        payload: dict[str, Any] = {"model": self.engine.model, "temperature": s.temperature,
                                   "top_p": s.top_p, "max_tokens": max(1, min(s.max_tokens, room))}
        if s.seed is not None:
            payload["seed"] = s.seed
        if self.stop:
            payload["stop"] = self.stop[:4]  # the API's limit
        return payload

    # ------------------------------------------------------------ turns
    def send(self, text: str, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
        self.messages.append({"role": "user", "content": text})
        try:
            wire, used = self.fit(self.messages)
        except BaseException:
            self.messages.pop()
            raise
        self.on_change()
        payload = {**self._payload(self.engine.n_ctx - used), "messages": wire}
        yield from self._stream("chat/completions", payload, used, None, cancelled)

    def continue_reply(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Through the completions API, with the conversation rendered by the entry's
        chat template: the chat API has no portable way to extend an answer."""
        if self.template is None:
            raise EngineError("/continue on a remote model needs its chat template: set template = "
                              "\"chatml\" (or the model's preset) in its models.toml entry or pass --template")
        last = self.messages[-1]
        wire, used = self.fit(self.messages[:-1])
        prompt = self.template.render(wire, add_generation_prompt=True) + last["content"]
        used = self.engine.count_tokens(prompt)
        payload = {**self._payload(self.engine.n_ctx - used), "prompt": prompt}
        yield from self._stream("completions", payload, used, last, cancelled)

    def _stream(self, path: str, payload: dict, used: int, extend: dict | None,
                cancelled: Callable[[], bool]) -> Iterator[str]:
        reply = RemoteReply(used)
        self.last = reply
        start = time.perf_counter()
        error: RemoteError | None = None
        try:
            for text in self.engine.stream(path, payload, cancelled):
                if reply.first_token_s is None:
                    reply.first_token_s = time.perf_counter() - start
                reply.chunks.append(text)
                yield text
            if cancelled():
                reply.finish = generation.CANCELLED
            else:
                reply.finish = generation.LENGTH if self.engine.finish_reason == "length" else generation.EOG
        except RemoteError as e:
            if path == "completions" and "HTTP 404" in str(e):
                e = RemoteError(f"{self.engine.base_url} has no completions API (HTTP 404): /continue "
                                "needs it on a remote model")
            reply.finish, error = generation.ERROR, e
        except (KeyboardInterrupt, GeneratorExit):
            reply.finish = generation.CANCELLED
            raise
        finally:
            reply.elapsed_s = time.perf_counter() - start
            if extend is None and (reply.chunks or reply.finish != generation.ERROR):
                extend = {"role": "assistant", "content": ""}
                self.messages.append(extend)
            if extend is not None:
                extend["content"] += reply.text
                extend["finish"] = reply.finish
            self.context_used = used + len(reply.chunks)
            self.on_change()
        if error is not None:
            raise error
