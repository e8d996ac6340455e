"""A conversation with one model: messages, the chat template, and the token ids of
what the engine has already evaluated, so each turn feeds the engine only new text.

Shared by the one-shot CLI and the REPL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from chatterm import context_window, generation, templates
from chatterm.engines.base import Engine, Sampling, never
from chatterm.templates import ChatTemplate


@dataclass
class PromptCache:
    """Text the engine has evaluated and its exact token ids (generated ids included:
    re-tokenizing a reply can give other ids and would defeat prefix reuse)."""

    text: str = ""
    ids: list[int] = field(default_factory=list)


class Chat:
    def __init__(self, engine: Engine, template: ChatTemplate | str, sampling: Sampling,
                 stop: list[str] | None = None, system: str | None = None):
        """`template`: a ChatTemplate, or its choice ("gguf": the file's own, else a
        preset name), resolved when first needed: an engine still loading in its worker
        does not know its file's template yet, and the prompt must not wait for it."""
        self.engine = engine
        self._template = template if isinstance(template, ChatTemplate) else None
        self._template_choice = template if isinstance(template, str) else ""
        self.sampling = sampling
        self.stop = list(stop or [])  # the model's stop strings; the template's are added
        self.messages: list[dict] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.cache = PromptCache()
        self.last: generation.Generation | None = None
        self.dropped = 0  # oldest messages left out of the last prompt to fit the window
        self.on_change: Callable[[], None] = lambda: None  # persistence hook (the REPL saves)

    def engine_ready(self, cancelled: Callable[[], bool] = never) -> bool:
        """Wait for the model to load (see `Engine.wait_ready`)."""
        return self.engine.wait_ready(cancelled)

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:
            engine = self.engine
            self._template = templates.resolve(self._template_choice, engine.chat_template,
                                               bos=engine.bos_text, eos=engine.eos_text)
        return self._template

    def stops(self) -> list[str]:
        """The model's stop strings and those its template's preset needs."""
        return self.stop + [s for s in templates.PRESET_STOPS.get(self.template.name, []) if s not in self.stop]

    @property
    def context_used(self) -> int:
        """Tokens in the context window now (for the toolbar and /stats)."""
        return len(self.cache.ids)

    # ------------------------------------------------------------ prompt
    def _tokenize(self, text: str) -> list[int]:
        cache = self.cache
        if cache.ids and text.startswith(cache.text):
            return cache.ids + self.engine.tokenize(text[len(cache.text):])
        ids = self.engine.tokenize(text)
        engine = self.engine
        if engine.add_bos and engine.bos_id is not None and (not ids or ids[0] != engine.bos_id):
            ids.insert(0, engine.bos_id)
        return ids

    def render(self, messages: list[dict], tail: str = "") -> tuple[str, list[int]]:
        wire = [{"role": m["role"], "content": m["content"]} for m in messages]
        text = self.template.render(wire, add_generation_prompt=True) + tail
        return text, self._tokenize(text)

    def fit(self, messages: list[dict], tail: str = "") -> tuple[str, list[int]]:
        """Render `messages`, leaving out the oldest turns until a reply has room."""
        def measure(kept: list[dict]) -> tuple[int, tuple[str, list[int]]]:
            text, ids = self.render(kept, tail)
            return len(ids), (text, ids)

        n_ctx = self.engine.n_ctx
        prompt, self.dropped = context_window.fit(
            messages, measure, n_ctx, context_window.reply_reserve(n_ctx, self.sampling.max_tokens))
        return prompt

    # ------------------------------------------------------------ turns
    def send(self, text: str, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Stream the reply to a new user message; the reply joins `messages` when done."""
        self.messages.append({"role": "user", "content": text})
        try:
            prompt_text, ids = self.fit(self.messages)
        except BaseException:
            self.messages.pop()
            raise
        self.on_change()  # the question is on disk before the reply starts
        yield from self._generate(prompt_text, ids, None, cancelled)

    def continue_reply(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Continue the last assistant message from where it stopped."""
        last = self.messages[-1]
        prompt_text, ids = self.fit(self.messages[:-1], tail=last["content"])
        yield from self._generate(prompt_text, ids, last, cancelled)

    def _generate(self, prompt_text: str, ids: list[int], extend: dict | None,
                  cancelled: Callable[[], bool]) -> Iterator[str]:
        gen = generation.Generation(self.engine, ids, self.sampling, self.stops(), cancelled)
        self.last = gen
        try:
            yield from gen
        finally:
            # Whatever happened, what was generated is kept (a cut reply is marked).
            if extend is None:
                extend = {"role": "assistant", "content": ""}
                self.messages.append(extend)
            extend["content"] += gen.text
            extend["finish"] = gen.finish
            if gen.finish == generation.ERROR:
                # The engine failed or died: a new one (perhaps another engine, with
                # another tokenizer) starts from the text, not from these ids.
                self.cache = PromptCache()
            else:
                self.cache = PromptCache(prompt_text + self.engine.detokenize(gen.tokens, special=True),
                                         ids + gen.tokens)
            self.on_change()
