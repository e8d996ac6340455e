"""A scripted OpenAI-compatible server for the failure cases a real one will not
produce on demand: hostile content, malformed streams, HTTP errors, silence."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": text}, "index": 0}]}).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def call_events(name: str, arguments: str, call_id: str = "call-1", pieces: int = 5) -> list[bytes]:
    """A tool call as a server with a tool parser streams it: the name, then the
    arguments' JSON split over `pieces` events, then finish_reason "tool_calls"."""
    def data(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + json.dumps({"choices": [{"delta": delta, "index": 0, "finish_reason": finish}]}).encode() + b"\n\n"
    size = -(-len(arguments) // pieces)
    parts = [arguments[i:i + size] for i in range(0, len(arguments), size)]
    return [data({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": ""}}]}),
            *(data({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}) for part in parts),
            data({}, "tool_calls"), DONE]


class FakeServer:
    """`chunks`: the SSE body of /v1/chat/completions (bytes, sent one by one);
    `status`/`body`: an HTTP error instead; `stall`: accept and never answer;
    `model_id`: what /v1/models lists; `models_body`: (bytes, headers) sent for
    /v1/models instead (a gzip bomb)."""

    def __init__(self, chunks: list[bytes] | None = None, status: int = 200, body: bytes = b"",
                 stall: bool = False, delay_s: float = 0.0, model_id: str = "fake-model",
                 models_body: tuple[bytes, dict[str, str]] | None = None,
                 replies: list[list[bytes]] | None = None, refusals: list[tuple[int, bytes]] | None = None):
        """`replies`: the SSE bodies of successive requests (then `chunks` for the rest);
        `refusals`: (status, body) answers to the first requests, before those."""
        self.replies = list(replies or [])
        self.refusals = list(refusals or [])
        self.chunks, self.status, self.body, self.stall, self.delay_s = chunks or [], status, body, stall, delay_s
        self.model_id, self.models_body = model_id, models_body
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "json": json.loads(raw) if raw else None})
                return server.requests[-1]

            def do_GET(self) -> None:
                self._record()
                if self.path.endswith("/models") and server.models_body is not None:
                    body, headers = server.models_body
                    self.send_response(200)
                    for name, value in {"Content-Length": str(len(body)), **headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path.endswith("/models"):
                    self._send(200, json.dumps({"data": [{"id": server.model_id}]}).encode(), "application/json")
                else:
                    self._send(404, b'{"error": "no such route"}', "application/json")

            def do_POST(self) -> None:
                self._record()
                if "tokenize" in self.path:
                    self._send(404, b"{}", "application/json")
                    return
                if server.stall:
                    time.sleep(30)
                    return
                if server.refusals:
                    self._send(*server.refusals.pop(0), "application/json")
                    return
                if server.status != 200:
                    self._send(server.status, server.body, "application/json")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in (server.replies.pop(0) if server.replies else server.chunks):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(server.delay_s)

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
