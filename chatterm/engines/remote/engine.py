"""A model served elsewhere, over the OpenAI-compatible HTTP API that vLLM, TGI,
SGLang, llama.cpp's llama-server, llama-cpp-python's server and ollama all speak.

The server owns the tokenizer and the chat template, so this engine works on messages
and text, not token ids: `chatterm.conversation.remote.RemoteBackend` drives it. Streams arrive as
server-sent events and are read on a worker thread, so Ctrl-C closes the connection at
once instead of waiting for the server's next token. The API key is read from the
environment when a request is made and is never stored, logged or shown.
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from chatterm.engines.remote import sse
from chatterm.engines.remote.errors import RemoteError, http_error, network_error
from chatterm.engines.remote.events import CallDelta, Delta, End, SurrogateJoiner, call_deltas
from chatterm.engines.remote.events import deltas as event_deltas
from chatterm.engines.remote.events import finish_reason as finish_reason_of
from chatterm.errors import ConfigError, EngineError

DEFAULT_CTX = 4096  # when neither the user nor the server says
QUEUED = 4096  # events read ahead of the reply
MAX_BODY = 16 << 20  # bytes of a JSON answer (after decompression: a gzip bomb stops here)
BYTES_PER_TOKEN_ESTIMATE = 3  # see estimate_tokens


def estimate_tokens(text: str) -> int:
    """Used only when the server has no tokenize endpoint: UTF-8 bytes / 3, rounded up.
    English runs ~4 bytes a token and CJK ~3 bytes a character-token, so this errs
    toward counting too many: turns are dropped a little early, never too late."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)


class RemoteEngine:
    name = "remote"

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60.0, n_ctx: int | None = None):
        try:
            import httpx
        except ImportError:  # pragma: no cover - a declared dependency
            raise EngineError("httpx is not installed; pip install httpx") from None
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
        self._httpx = httpx
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        self.api_key_env = api_key_env
        if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            # Not echoed: it may be the key itself, pasted in the wrong place.
            raise ConfigError("--api-key-env / api_key_env takes the name of an environment variable "
                              "that holds the key, not the key")
        if api_key_env and not os.environ.get(api_key_env):
            raise ConfigError(f"${api_key_env} is not set: it should hold the API key for {self.base_url}")
        self.timeout = timeout
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        self.device = parts.netloc
        self.notes: list[str] = []
        self.model = model or ""  # named in errors, so set before the first request
        if not self.model:
            self.model = self._first_model()
        self.n_ctx = n_ctx or self._server_context() or DEFAULT_CTX
        self._tokenize: Callable[[str], int] | None = None
        self.counts_exactly = True  # False once we fall back to the estimate
        self._counted: dict[str, int] = {}

    def state(self) -> str:
        return "ready"  # the server loaded its model; errors come with the first request

    def wait_ready(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        return True

    # ------------------------------------------------------------ requests
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _fetch(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """(status, body) of a request, the body read only up to MAX_BYTES once
        decompressed: RemoteError past that."""
        with self.client.stream(method, url, headers=self._headers(), **kwargs) as response:
            return response.status_code, _capped(response, url)

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            status, body = self._fetch(method, url, **kwargs)
        except self._httpx.HTTPError as e:
            raise RemoteError(network_error(self._httpx, e, self.base_url, self.timeout)) from None
        if status >= 400:
            raise RemoteError(self._http_error(status, body.decode("utf-8", "replace")))
        try:
            return json.loads(body)
        except ValueError:
            raise RemoteError(f"{url}: the server answered with something that is not JSON") from None

    def _first_model(self) -> str:
        data = self._request("GET", f"{self.base_url}/models")
        models = data.get("data") if isinstance(data, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise RemoteError(f"{self.base_url}/models lists no model; name one with -m")
        return str(models[0]["id"])

    def _server_context(self) -> int | None:
        """vLLM lists max_model_len with its models; llama-server has /props."""
        for url, find in ((f"{self.base_url}/models", _vllm_ctx), (f"{self._root}/props", _llama_server_ctx)):
            try:
                status, body = self._fetch("GET", url, timeout=min(self.timeout, 5.0))
                if status == 200:
                    n = find(json.loads(body))
                    if isinstance(n, int) and n > 0:
                        return n
            except (self._httpx.HTTPError, RemoteError, ValueError, KeyError, TypeError, IndexError):
                continue
        return None

    # ------------------------------------------------------------ tokens
    def count_tokens(self, text: str) -> int:
        cached = self._counted.get(text)
        if cached is None:
            if self._tokenize is None:
                self._tokenize = self._find_tokenizer(text)
            cached = self._counted[text] = self._tokenize(text)
        return cached

    def _find_tokenizer(self, sample: str) -> Callable[[str], int]:
        """The first tokenize endpoint the server answers: llama-cpp-python's, then the
        /tokenize of llama-server, vLLM and SGLang, then TGI's. Else the estimate."""
        candidates = [
            (f"{self._root}/extras/tokenize/count", lambda t: {"input": t, "model": self.model}),
            (f"{self._root}/tokenize", lambda t: {"content": t, "prompt": t, "model": self.model,
                                                  "add_special": False, "add_special_tokens": False}),
            (f"{self._root}/tokenize", lambda t: {"inputs": t}),
        ]
        for url, body in candidates:
            try:
                status, answer = self._fetch("POST", url, json=body(sample), timeout=min(self.timeout, 5.0))
                if status == 200 and _token_count(json.loads(answer)) is not None:
                    return functools.partial(self._count_body, url, body)
            except (self._httpx.HTTPError, RemoteError, ValueError):
                continue
        self.counts_exactly = False
        return estimate_tokens

    def _count_body(self, url: str, body: Callable[[str], dict], text: str) -> int:
        return self._count_with(url, body(text))

    def _count_with(self, url: str, body: dict) -> int:
        count = _token_count(self._request("POST", url, json=body))
        if count is None:
            raise RemoteError(f"{url}: unexpected answer")
        return count

    # ------------------------------------------------------------ streaming
    def stream(self, path: str, payload: dict, cancelled: Callable[[], bool]) -> Iterator[Delta | CallDelta | End]:
        """A streamed completion at `path` ("chat/completions" or "completions"): text
        deltas (`Delta.reasoning`: the thinking of a reasoning model, from
        `reasoning_content` or `reasoning`), then one `End` with the server's
        finish_reason when the server ended the reply (nothing more when cancelled).
        Closing the generator (or cancelling) closes the connection."""
        finish_reason: str | None = None
        items: queue.Queue = queue.Queue(maxsize=QUEUED)  # a server faster than the screen waits
        opened: list[Any] = []
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def read() -> None:
            try:
                with self.client.stream("POST", f"{self.base_url}/{path}", json={**payload, "stream": True},
                                        headers=self._headers()) as response:
                    opened.append(response)
                    if response.status_code >= 400:
                        body = _capped(response, path).decode("utf-8", "replace")
                        put(("error", RemoteError(self._http_error(response.status_code, body, path))))
                        return
                    done = False
                    for event in sse.events(response.iter_bytes()):  # bounded lines and events
                        if stop.is_set():
                            return
                        if event is sse.DONE:
                            done = True
                        else:
                            put(("event", event))
                put(("end", done))
            except sse.MalformedStream as e:
                put(("error", RemoteError(f"malformed stream from {self.base_url}: {e}")))
            except self._httpx.HTTPError as e:
                if not stop.is_set():
                    said = network_error(self._httpx, e, self.base_url, self.timeout, during_reply=True)
                    put(("error", RemoteError(said)))
            except Exception as e:  # anything else on the worker must still reach the user
                put(("error", RemoteError(f"{type(e).__name__}: {e}")))

        joiner = SurrogateJoiner()
        worker = threading.Thread(target=read, name="chatterm-remote", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    kind, item = items.get(timeout=0.05)
                except queue.Empty:
                    if cancelled():
                        return
                    continue
                if kind == "end":
                    yield from joiner.rest()
                    if not item and finish_reason is None:
                        raise RemoteError(f"{self.base_url}: the stream ended before the reply did "
                                          "(no [DONE], no finish_reason: a proxy or the server closed it)")
                    yield End(finish_reason)
                    return
                if kind == "error":
                    raise item
                deltas = event_deltas(item)
                finish_reason = finish_reason_of(item) or finish_reason
                for reasoning, text in deltas:
                    yield from joiner.feed(reasoning, text)
                yield from call_deltas(item)
                if cancelled():
                    return
        finally:
            stop.set()
            for response in opened:
                response.close()  # the worker's read fails at once; it is a daemon thread

    def _http_error(self, status: int, body: str, path: str = "") -> str:
        return http_error(status, body, f"{self.base_url}/{path}" if path else self.base_url,
                          self.api_key_env, self.model)

    def close(self) -> None:
        self.client.close()


def _capped(response: Any, url: str) -> bytes:
    """A response's body, decompressed, refused past MAX_BODY."""
    chunks, total = [], 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > MAX_BODY:
            raise RemoteError(f"{url}: the server's answer is larger than {MAX_BODY >> 20} MiB; not read")
        chunks.append(chunk)
    return b"".join(chunks)


def _token_count(data: Any) -> int | None:
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return data["count"]
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
        return None
    return len(data) if isinstance(data, list) else None


def _vllm_ctx(data: Any) -> Any:
    return data["data"][0]["max_model_len"]


def _llama_server_ctx(data: Any) -> Any:
    return data["default_generation_settings"]["n_ctx"]

