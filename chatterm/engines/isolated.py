"""An engine in a worker process: the `Engine` interface over its pipes (the process
itself: `worker_process`), and the crash handling that keeps a chat alive when
native code dies.

The worker (`chatterm.engines.worker`) starts loading at once and chatterm goes on
without waiting: the prompt can be typed while a model loads. Tokens stream ahead of
the reader with their bytes and end flag (`Token`), so a reply costs one small pipe
read per token and no request. When the
worker dies (a signal, an abort, the out-of-memory killer) the caller gets one
`EngineCrashed` line naming signal, engine and model, and a new worker is already
loading: the same settings, then safe ones, then the other engine (`recovery`).
A worker that does not stop within STOP_GRACE_S of being asked is killed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from chatterm import errors
from chatterm.engines import wire
from chatterm.engines.base import Decoding, Engine, LoadOptions, Token, never
from chatterm.engines.recovery import GENERATING, IDLE, LOADING, PROMPT, Attempt, Recovery
from chatterm.engines.worker import start_request
from chatterm.engines.worker_process import STOP_GRACE_S, WorkerGone, WorkerProcess, exit_text, log_path
from chatterm.errors import ChattermError, EngineError


class EngineCrashed(EngineError):
    """The worker died, or had to be killed; a new one may already be loading."""

    def __init__(self, summary: str, log: Path | None = None):
        super().__init__(summary + (f" (log: {log})" if log else ""))
        self.summary, self.log = summary, log

    def adding(self, text: str) -> str:
        return self.summary + text + (f" (log: {self.log})" if self.log else "")


class IsolatedEngine(Engine):
    """`name` is the engine running now: a crash can switch it (see `recovery`)."""

    def __init__(self, engine: str, options: LoadOptions, model: str,
                 alternatives: Sequence[str] = (), restart: bool = True):
        self.model = model  # for messages: the catalogue name
        self.options = options
        self.restart = restart  # False: a crash ends this engine (the one-shot CLI)
        self.recovery = Recovery(engine, [a for a in alternatives if a != engine])
        self._start(self.recovery.current)

    # ------------------------------------------------------------ the worker
    def _start(self, attempt: Attempt) -> None:
        self.name = attempt.engine
        self.attempt = attempt
        options = dataclasses.replace(self.options, safe=attempt.safe)
        self._worker = WorkerProcess(start_request(attempt.engine, options),
                                     f"{attempt.engine}{' (safe settings)' if attempt.safe else ''}: "
                                     f"{self.model} ({options.path})")
        self._info: dict[str, Any] | None = None
        self._failed: ChattermError | None = None  # loading failed, or crashes used up the ladder
        self._crash: EngineCrashed | None = None  # a crash while loading, not yet told
        self._streaming = False  # a generation is open: its frames are the only ones to read
        self._next_id = 0
        self._pieces: dict[int, bytes] = {}  # piece() answers, asked once each

    @property
    def pid(self) -> int:
        return self._worker.pid

    def _died(self, point: str) -> EngineCrashed:
        """The worker's end of the pipe closed: say how it ended, start the next attempt."""
        code = self._worker.exit_code()
        if self._worker.killed:  # a hang the user cut short: no crash, the same settings again
            what = f"the {self.name} engine did not stop within {STOP_GRACE_S:g} s and was killed"
            attempt: Attempt | None = self.attempt
        else:
            subject = f"loading {self.options.path}" if point == LOADING else f"{point} with {self.model}"
            what = f"the {self.name} engine crashed ({exit_text(code)}) while {subject}"
            attempt = self.recovery.after_crash(point)
        if not self.restart:
            attempt = None
        elif attempt is None:
            what += "; it crashed at the same point with every engine and setting: /model to choose another"
        else:
            what += f"; {attempt.says(self.attempt)}"
        crash = EngineCrashed(what, log_path())
        if attempt is None:
            self._failed = crash
        else:
            self._start(attempt)
        return crash

    # ------------------------------------------------------------ frames
    def _send(self, kind: bytes, payload: bytes, point: str) -> None:
        try:
            self._worker.send(kind, payload)
        except WorkerGone:
            raise self._died(point) from None

    def _receive(self, point: str, poll: Callable[[], bool] | None = None) -> tuple[bytes, bytes] | None:
        """The next frame; None once `poll` says to stop waiting. End of file: EngineCrashed."""
        try:
            return self._worker.receive(poll)
        except WorkerGone:
            raise self._died(point) from None

    def _request(self, op: str, point: str, **args: Any) -> int:
        if not self._worker.alive():  # died between requests (the out-of-memory killer, say)
            self._worker.drain()
            raise self._died(IDLE)
        self._next_id += 1
        self._send(wire.REQUEST, json.dumps({"id": self._next_id, "op": op, **args}).encode(), point)
        return self._next_id

    def _settle(self, rid: int, point: str) -> None:
        """Wait out request `rid` (its result or its generation's end) after the caller
        gave up on it, so no stale frame reaches the next request. Kills the worker when
        it does not finish within STOP_GRACE_S, or at another Ctrl-C."""
        since = time.monotonic()

        def overdue() -> bool:
            self._worker.kill_after(since)
            return False

        try:
            while True:
                frame = self._receive(point, overdue)
                if frame and frame[0] in (wire.RESULT, wire.END):
                    message = json.loads(frame[1])
                    if message["id"] == rid:
                        self._ended(message)
                        return
        except KeyboardInterrupt:
            self._worker.kill()
            self._worker.drain()
            raise self._died(point) from None

    def _ended(self, message: dict[str, Any]) -> None:
        """A generation's end: the worker's speculation tally comes with it."""
        if self._info is None:
            return
        if "speculation" in message:
            self._info["speculation"] = message["speculation"]
        self._info["reused"] = message.get("reused")

    # ------------------------------------------------------------ loading
    def state(self) -> str:
        """"loading", "ready", "failed", or "crashed" (while loading; the next attempt is
        loading, and `wait_ready` tells the crash), without waiting."""
        if self._info is None and self._failed is None and self._crash is None and self._worker.readable():
            try:
                self.wait_ready()
            except EngineCrashed as crash:
                self._crash = crash
            except ChattermError:
                pass
        if self._info is not None:
            return "ready"
        return "failed" if self._failed is not None else "crashed" if self._crash is not None else "loading"

    def wait_ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait for the model to load; False if `cancelled` first. Raises why loading
        failed (the same error each time), or a crash while loading (once: the next
        attempt is loading by then)."""
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        while self._info is None:
            if self._failed is not None:
                raise self._failed
            frame = self._receive(LOADING, cancelled)
            if frame is None:
                return False
            kind, payload = frame
            if kind == wire.READY:
                message = json.loads(payload)
                if "error" in message:
                    error = _error(message["error"])
                    if self.recovery.level:  # a fallback the crashes led to
                        error = type(error)(f"{error} (tried after repeated crashes: /model to choose another)")
                    self._failed = error
                    raise error
                self._info = message
        return True

    def _describe(self, key: str) -> Any:
        self.wait_ready()
        assert self._info is not None
        return self._info[key]

    n_ctx = property(lambda self: self._describe("n_ctx"))
    device = property(lambda self: self._describe("device"))
    notes = property(lambda self: self._describe("notes"))
    chat_template = property(lambda self: self._describe("chat_template"))
    bos_text = property(lambda self: self._describe("bos_text"))
    eos_text = property(lambda self: self._describe("eos_text"))
    add_bos = property(lambda self: self._describe("add_bos"))
    bos_id = property(lambda self: self._describe("bos_id"))
    speculation = property(lambda self: self._describe("speculation"))
    markup = property(lambda self: self._describe("markup"))
    reused = property(lambda self: (self._info or {}).get("reused"))

    # ------------------------------------------------------------ requests
    def _call(self, op: str, **args: Any) -> Any:
        if self._streaming:  # its answer would queue behind the reply, whose tokens it would eat
            raise RuntimeError(f"engine request {op!r} while a reply streams")
        self.wait_ready()
        point = f"answering {op}"
        rid = self._request(op, point, **args)
        try:
            while True:
                frame = self._receive(point)
                assert frame is not None
                kind, payload = frame
                if kind == wire.RESULT:
                    message = json.loads(payload)
                    if message["id"] == rid:
                        if "error" in message:
                            raise _error(message["error"])
                        return message["value"]
        except KeyboardInterrupt:
            self._settle(rid, point)
            raise

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self._call("tokenize", text=text, special=special)

    def save_state(self, path: str, keep: int | None = None) -> dict[str, Any]:
        return self._call("save_state", path=path, keep=keep)

    def load_state(self, path: str, digest: str, expected: list[int]) -> int:
        return self._call("load_state", path=path, digest=digest, expected=expected)

    def set_adapters(self, scales: list[float]) -> bool:
        changed = bool(self._call("set_adapters", scales=scales))
        # A restarted worker loads them at these scales.
        self.options = dataclasses.replace(
            self.options, adapters=tuple((path, s) for (path, _), s in zip(self.options.adapters, scales)))
        return changed

    def count_tokens(self, text: str) -> int:
        return self._call("count_tokens", text=text)

    def piece(self, token: int, *, special: bool = False) -> bytes:
        cached = None if special else self._pieces.get(token)
        if cached is None:
            cached = bytes.fromhex(self._call("piece", token=token, special=special))
            if not special:
                self._pieces[token] = cached
        return cached

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return self._call("detokenize", tokens=list(tokens), special=special)

    def is_eog(self, token: int) -> bool:
        return self._call("is_eog", token=token)

    def reset(self) -> None:
        self._call("reset")

    def generate(self, prompt: Sequence[int], sampling: Decoding, cancelled: Callable[[], bool] = never,
                 limit: int | None = None) -> Generator[Token, None, None]:
        """The worker's tokens as they arrive (it keeps the limits: `Engine.generate`)."""
        if not self.wait_ready(cancelled) or cancelled():
            return
        point = PROMPT
        rid = self._request("generate", point, prompt=list(prompt),
                            sampling=dataclasses.asdict(sampling), limit=limit)

        stop_asked: float | None = None

        def stop_when_cancelled() -> bool:
            nonlocal stop_asked
            if stop_asked is not None:
                self._worker.kill_after(stop_asked)
            elif cancelled():
                stop_asked = time.monotonic()
                self._send(wire.STOP, str(rid).encode(), point)
            return False

        finished = False  # the worker said the generation is over: nothing left to wait for
        self._streaming = True
        try:
            while True:
                frame = self._receive(point, stop_when_cancelled)
                assert frame is not None
                kind, payload = frame
                if kind == wire.TOKEN:
                    point = GENERATING
                    yield Token(*wire.unpack_token(payload))
                    if cancelled():  # frames may be queued ahead: stop reading them now (finally: STOP)
                        return
                elif kind in (wire.END, wire.RESULT):
                    message = json.loads(payload)
                    if message["id"] != rid:
                        continue
                    finished = True
                    self._ended(message)
                    if "error" in message:
                        raise _error(message["error"])
                    return
        except EngineCrashed:
            finished = True  # that worker is gone
            raise
        finally:
            self._streaming = False
            if not finished:  # the caller stopped reading (or Ctrl-C): stop the worker too
                self._send(wire.STOP, str(rid).encode(), point)
                self._settle(rid, point)

    def close(self) -> None:
        worker = self._worker
        if worker.alive():
            try:
                worker.send(wire.REQUEST, json.dumps({"id": 0, "op": "close"}).encode())
            except WorkerGone:
                pass
            worker.stop()
        worker.close_pipes()


def _error(error: dict[str, str]) -> ChattermError:
    """The worker's error as the same class here (a ModelFileError stays one)."""
    cls = getattr(errors, error.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, ChattermError)):
        cls = EngineError
    return cls(error["message"])
