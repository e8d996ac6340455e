"""`Model`: the handle the front ends hold on a loaded model (`loader.load` makes one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chatterm.conversation.backend import Backend
from chatterm.conversation.local import LocalBackend
from chatterm.engines.base import Sampling, never
from chatterm.errors import ChattermError
from chatterm.models import adapters as lora
from chatterm.models.adapters import Adapter
from chatterm.models.catalog import ModelSpec


@dataclass
class Model:
    """The one handle the front ends hold on a model: ready to answer, or still loading
    in its worker. What they need of it is here (its state, device, context size,
    notes, a token count, closing it); the conversation alone uses `backend`."""

    backend: Backend
    spec: ModelSpec
    path: str
    adapters: list[Adapter] = field(default_factory=list)  # LoRA adapters loaded with it, at their scales now

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reference(self) -> str:
        """How a session names this model to find it again: its catalogue entry or hub
        reference, or the file's absolute path for a model given by path."""
        spec = self.spec
        if spec.source == "path" and not spec.origin and spec.name == Path(spec.location).name:
            return spec.location
        return spec.name

    @property
    def engine_name(self) -> str:
        """The engine running now: a crash can switch it (`engines.recovery`)."""
        return str(self.backend.engine.name)

    @property
    def defaults(self) -> Sampling:
        """The model's sampling: its entry's, over chatterm's."""
        return Sampling().updated(**self.spec.sampling)

    def state(self) -> str:
        """"loading", "ready", "failed" or "crashed", without waiting."""
        return self.backend.engine.state()

    def wait_ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait for it to load; False if `cancelled` first (a failure to load raises)."""
        return bool(self.backend.engine.wait_ready(cancelled))

    @property
    def device(self) -> str:
        return str(self.backend.engine.device)

    @property
    def n_ctx(self) -> int:
        return self.backend.n_ctx

    @property
    def notes(self) -> list[str]:
        notes = list(self.backend.engine.notes)
        if getattr(self.backend, "kv", None) is not None:  # saved caches on: their bound is read
            from chatterm.sessions import kv_cache

            problem = kv_cache.limit_problem()
            if problem:
                notes.append(problem)
        return notes

    @property
    def worker_pid(self) -> int | None:
        """The engine worker's process, for /stats (None: no worker, a server)."""
        return getattr(self.backend.engine, "pid", None)

    @property
    def speculation(self) -> dict | None:
        """Speculative decoding's tally so far, for /stats (None: not this engine)."""
        return getattr(self.backend.engine, "speculation", None)

    @property
    def think_switch(self) -> bool:
        return bool(self.backend.think_switch)

    @property
    def tool_syntax(self) -> str | None:
        """The syntax of tool calls the model's chat template teaches ("hermes",
        "llama3", "mistral"), "server" for a remote model, None for a template with
        none (chatterm then describes the tools in the system prompt)."""
        if not isinstance(self.backend, LocalBackend):
            return "server"
        family = self.backend.template.tool_family
        return family.name if family is not None else None

    def count(self, text: str) -> int:
        """Tokens in `text` alone (asks the engine or the server)."""
        return self.backend.count(text)

    def split_before(self, question: str) -> None:
        """A one-shot answer's question: the prompt's tokens before it are noted (`save_prefix`)."""
        if hasattr(self.backend, "split_before"):
            self.backend.split_before = question

    def save_prefix(self) -> int:
        """The cache of the prompt before the one-shot question saved for the next one."""
        save = getattr(self.backend, "save_prefix", None)
        return save() if save is not None else 0

    def save_cache(self, session: str) -> int:
        """The engine's cache saved with `session` (`sessions.kv_cache`): tokens saved."""
        save = getattr(self.backend, "save_kv", None)
        return save(session) if save is not None else 0

    @property
    def reuse(self) -> tuple[int | None, int]:
        """(prompt tokens of the last reply taken from the cache, not read (None:
        unknown), tokens the session's saved cache gave when it opened)."""
        return getattr(self.backend.engine, "reused", None), getattr(self.backend, "restored", 0)

    def adapter(self, name: str) -> Adapter:
        found = next((a for a in self.adapters if a.name == name), None)
        if found is None:
            loaded = ", ".join(a.name for a in self.adapters) or "none (chatterm --lora PATH loads one)"
            raise ChattermError(f"no LoRA adapter {name!r}; loaded: {loaded}")
        return found

    def set_adapter(self, name: str, scale: float) -> bool:
        """Adapter `name` at `scale` (0: off) from the next reply on, the base model
        untouched. Returns whether the set in effect changed (the cache then starts over:
        an adapter changes every position)."""
        try:
            lora.check_scale(scale, f"scale {scale:g}")
        except ValueError as e:
            raise ChattermError(str(e)) from None
        chosen = self.adapter(name)
        return self._scale({a.name: scale if a is chosen else a.scale for a in self.adapters})

    @contextlib.contextmanager
    def base_only(self) -> Iterator[None]:
        """The base model alone while the block runs (`/retry --base`), the adapters at
        their scales again afterwards."""
        before = {a.name: a.scale for a in self.adapters}
        self._scale(dict.fromkeys(before, 0.0))
        try:
            yield
        finally:
            self._scale(before)

    def _scale(self, scales: dict[str, float]) -> bool:
        backend = self.backend
        assert isinstance(backend, LocalBackend)  # adapters load with local models only
        old = {a.name: a.scale for a in self.adapters}
        for a in self.adapters:
            a.scale = scales[a.name]
        try:
            changed = backend.engine.set_adapters([a.scale for a in self.adapters])
        except BaseException:
            for a in self.adapters:
                a.scale = old[a.name]
            raise
        if changed and backend.kv is not None and backend.kv_key is not None:
            backend.kv = type(backend.kv)(backend.kv_key(lora.in_effect(self.adapters)))
        return changed

    def adapters_in_effect(self) -> list[dict[str, object]]:
        """What a reply records of the adapters that made it (name, file digest, scale)."""
        return lora.in_effect(self.adapters)

    def close(self) -> None:
        self.backend.engine.close()
