"""The engine worker: one model, loaded in a process of its own.

Native code can die (a llama.cpp kernel, ctransformers on an odd file, CUDA out of
memory, a driver fault), so chatterm never runs it in the process that holds the
conversation. `chatterm.engines.isolated` starts this module's `main` with the load request as
its argument and talks to it in `wire` frames on its
stdin and stdout; stderr is the engine log, where llama.cpp's own messages and, on a
crash, Python's fault handler traceback end up.

One request at a time, on the main thread. A reader thread takes frames off the pipe,
so a STOP reaches a generation in progress (checked between tokens, and by llama.cpp
between graph nodes while a prompt is evaluated), and end of file on the pipe (chatterm
gone, killed or not) ends the worker.
"""

from __future__ import annotations

import faulthandler
import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from chatterm.engines import loading, wire
from chatterm.engines.base import Decoding, Engine, LoadOptions
from chatterm.errors import ChattermError


class Channel:
    """The worker's end of the pipes."""

    def __init__(self, requests_fd: int, frames_fd: int):
        self.out = frames_fd
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopped: set[int] = set()  # generations asked to stop, by request id
        self._reader = wire.Reader(requests_fd)
        threading.Thread(target=self._read, name="chatterm-requests", daemon=True).start()

    def _read(self) -> None:
        reader = self._reader
        while True:
            frame = reader.pop()
            if frame is None:
                if not reader.fill():
                    os._exit(0)  # chatterm is gone: nobody will read what this worker says
                continue
            kind, payload = frame
            if kind == wire.STOP:
                self.stopped.add(int(payload))
            elif kind == wire.REQUEST:
                self.requests.put(json.loads(payload))

    def send(self, data: bytes) -> None:
        wire.write_all(self.out, data)


def describe(engine: Engine) -> dict[str, Any]:
    return {"name": engine.name, "n_ctx": engine.n_ctx, "device": engine.device, "notes": engine.notes,
            "chat_template": engine.chat_template, "bos_text": engine.bos_text,
            "eos_text": engine.eos_text, "add_bos": engine.add_bos, "bos_id": engine.bos_id,
            "speculation": engine.speculation, "markup": engine.markup}


def error_of(e: BaseException) -> dict[str, str]:
    if isinstance(e, ChattermError):
        return {"type": type(e).__name__, "message": str(e)}
    return {"type": "EngineError", "message": f"unexpected error in the engine: {type(e).__name__}: {e}"}


def stream(engine: Engine, channel: Channel, rid: int, prompt: list[int], sampling: Decoding,
           limit: int | None) -> None:
    """A pump: the engine's tokens into frames as they come, ahead of the reader
    (chatterm renders one token while the engine computes the next), until the
    generation ends (`Engine.generate` keeps the limits) or chatterm says stop."""
    cancelled: Callable[[], bool] = lambda: rid in channel.stopped  # noqa: E731
    count = 0
    tokens = engine.generate(prompt, sampling, cancelled, limit)
    try:
        for token in tokens:
            channel.send(wire.token_frame(*token))
            count += 1
    finally:
        tokens.close()
        channel.stopped.discard(rid)
    channel.send(wire.json_frame(wire.END, {"id": rid, "count": count, "speculation": engine.speculation,
                                            "reused": engine.reused}))


def serve(engine: Engine, channel: Channel) -> None:
    calls: dict[str, Callable[..., Any]] = {
        "tokenize": lambda text, special: engine.tokenize(text, special=special),
        "piece": lambda token, special: engine.piece(token, special=special).hex(),
        "detokenize": lambda tokens, special: engine.detokenize(tokens, special=special),
        "count_tokens": engine.count_tokens,
        "is_eog": engine.is_eog,
        "reset": engine.reset,
        "save_state": engine.save_state,
        "load_state": engine.load_state,
        "set_adapters": engine.set_adapters,
    }
    while True:
        request = channel.requests.get()
        rid, op = request.pop("id"), request.pop("op")
        try:
            if op == "generate":
                stream(engine, channel, rid, request["prompt"], Decoding(**request["sampling"]),
                       request["limit"])
                continue
            if op == "close":
                engine.close()
                os._exit(0)
            reply: dict[str, Any] = {"id": rid, "value": calls[op](**request)}
        except Exception as e:  # one request failed; the worker goes on
            reply = {"id": rid, "error": error_of(e)}
        channel.send(wire.json_frame(wire.RESULT, reply))


def main() -> None:
    # The protocol's pipes move to private descriptors; a library that prints to
    # stdout then writes to the log instead of corrupting the frames.
    requests_fd, frames_fd = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    faulthandler.enable()
    start = json.loads(sys.argv[1])
    channel = Channel(requests_fd, frames_fd)
    options = LoadOptions(**{**start["options"], "path": Path(start["options"]["path"]), "native_logs": True})
    try:
        engine = loading.load(start["engine"], options)
    except Exception as e:
        channel.send(wire.json_frame(wire.READY, {"error": error_of(e)}))
        return
    channel.send(wire.json_frame(wire.READY, describe(engine)))
    serve(engine, channel)


def start_request(engine: str, options: LoadOptions) -> str:
    """The worker's command-line argument for loading `options.path` with `engine`."""
    values = {f.name: getattr(options, f.name) for f in fields(options) if f.name not in ("parsed", "native_logs")}
    return json.dumps({"engine": engine, "options": {**values, "path": str(options.path)}})

