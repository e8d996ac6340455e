"""A conversation's backend on a local engine: the chat template renders the
messages, and the token ids the engine has already evaluated are kept, so each turn
feeds the engine only its new text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatterm.conversation import templates, thinking
from chatterm.conversation.backend import wire, with_tools
from chatterm.conversation.generation import Generation
from chatterm.conversation.plain_text import PlainText
from chatterm.conversation.reply import Finish, Reply
from chatterm.conversation.templates import ChatTemplate
from chatterm.engines.base import Decoding, Engine
from chatterm.models.chat_templates import PRESET_STOPS
from chatterm.tools.intent import FAKE_RESULT


@dataclass
class PromptCache:
    """Text the engine has evaluated and its exact token ids (generated ids included:
    re-tokenizing a reply can give other ids and would defeat prefix reuse)."""

    text: str = ""
    ids: list[int] = field(default_factory=list)


class LocalBackend:
    size_note = ""  # sizes are exact: the engine's own tokenizer

    def __init__(self, engine: Engine, template: ChatTemplate | str, stop: list[str] | None = None):
        """`template`: a ChatTemplate, or its choice ("gguf": the file's own, else a
        preset name), resolved when first needed: an engine still loading in its worker
        does not know its file's template yet, and the prompt must not wait for it."""
        self.engine = engine
        self._template = template if isinstance(template, ChatTemplate) else None
        self._template_choice = template if isinstance(template, str) else ""
        templates.warm(self._template_choice)
        self.stop = list(stop or [])  # the model's stop strings; the template's are added
        self.cache = PromptCache()
        self._plain: PlainText | None = None  # control-token texts kept plain (`plain_text`)
        self.kv: Any = None  # `sessions.kv_cache.KvStore`: caches saved with sessions (None: off)
        # The store's key for a set of LoRA adapters in effect (`kv_cache.model_key`).
        self.kv_key: Callable[[list], str] | None = None
        self.restored = 0  # tokens the saved cache gave when this backend first measured
        self._restore_tried = False
        # A one-shot answer's question: the tokens of the prompt before it (system prompt,
        # files) are noted (`_prefix`), so their cache can be saved for the next question.
        self.split_before: str | None = None
        self._prefix: tuple[str, list[int]] | None = None

    @property
    def n_ctx(self) -> int:
        return self.engine.n_ctx

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:
            engine = self.engine
            self._template = templates.resolve(self._template_choice, engine.chat_template,
                                               bos=engine.bos_text, eos=engine.eos_text)
        return self._template

    def stops(self) -> list[str]:
        """The model's stop strings and those its template's preset needs."""
        return self.stop + [s for s in PRESET_STOPS.get(self.template.name, []) if s not in self.stop]

    def count(self, text: str) -> int:
        return len(self.engine.tokenize(text, special=False))

    @property
    def think_switch(self) -> bool:
        return self.template.think_switch

    @property
    def tool_family(self) -> Any:
        """The syntax to read calls in: the template's, or the Hermes one chatterm
        teaches a model whose template has none (`tools.prompting`)."""
        from chatterm.tools.markup import HERMES

        return self.template.tool_family or HERMES

    @property
    def plain(self) -> PlainText:
        if self._plain is None:
            self._plain = PlainText.of(self.engine.markup, self.template.source)
        return self._plain

    def render(self, messages: list[dict], *, tools: list[dict] | None = None, think: bool | None = None,
               generation: bool = True) -> str:
        """The prompt text of `messages`, every string from outside guarded (`plain_text`);
        `generation`: ending with the opening of the model's reply (False: the last
        message's turn closed, as a finished reply is)."""
        template, plain = self.template, self.plain
        if plain:  # only the template's own markup becomes control tokens
            messages, tools = plain.value(messages), plain.value(tools)
        if tools or with_tools(messages):
            from chatterm.tools import prompting

            if template.tool_family is not None:
                return template.render(prompting.native(messages), add_generation_prompt=generation,
                                       think=think, tools=tools)
            return template.render(prompting.as_text(messages, tools), add_generation_prompt=generation,
                                   think=think)
        return template.render(wire(messages), add_generation_prompt=generation, think=think)

    def measure(self, messages: list[dict], tail: str | None, think: bool | None = None,
                tools: list[dict] | None = None) -> tuple[int, tuple[str, list[int]]]:
        plain = self.plain
        text = self.render(messages, tools=tools, think=think) + plain.text(tail or "")
        if not self.cache.ids and not self._restore_tried and self.kv is not None:
            self._restore_tried = True
            self._restore(text)
        ids = self._tokenize(text)
        at = text.rfind(plain.text(self.split_before)) if self.split_before and self._prefix is None else -1
        if at > 0:
            self._prefix = self._before(text, at, ids)
        return len(ids), (text, ids)

    def _restore(self, text: str) -> None:
        """The engine's cache from a saved state whose text begins `text` (a resumed
        chat), checked by the engine; nothing when none fits."""
        from chatterm.sessions.kv_cache import MIN_TOKENS

        entry = self.kv.find(text)
        if entry is None:
            return
        loaded = self.engine.load_state(entry["path"] + ".state", str(entry.get("digest", "")), entry["ids"])
        if loaded < MIN_TOKENS:
            return
        if not self._spells(entry["ids"], entry["text"]):
            self.engine.reset()  # the cache of another text: read the history again
            return
        self.cache = PromptCache(entry["text"], list(entry["ids"]))
        self.restored = loaded

    def _spells(self, ids: list[int], text: str) -> bool:
        """Whether `ids` (checked against the saved state by the engine) are the tokens
        of `text`: a description whose text was swapped for another's is not used."""
        shown, engine = self.plain.shown(text), self.engine
        if engine.detokenize(ids, special=True) == shown:
            return True
        return ids[0] == engine.bos_id and engine.detokenize(ids[1:], special=True) == shown

    def save_kv(self, session: str) -> int:
        """The engine's cache written for `session` (its prompt text and ids beside it),
        so the chat resumes without reading its history again; tokens saved (0: none)."""
        return self._save(self.cache.text, self.cache.ids, session)

    def _before(self, text: str, at: int, ids: list[int]) -> tuple[str, list[int]]:
        """(text, ids) of the prompt's tokens that lie before `at` (a one-shot question)
        and that the prompt alone tokenizes as it does: the tokens of `text[:at]` the
        whole prompt shares, so the prompt itself is tokenized as any other would be."""
        head = self._tokenize(text[:at])
        common = 0
        while common < min(len(head), len(ids)) and head[common] == ids[common]:
            common += 1
        shared = self.engine.detokenize(ids[:common], special=True)
        return (shared, ids[:common]) if text.startswith(shared) else ("", [])

    def save_prefix(self) -> int:
        """The cache of the prompt before a one-shot question (`split_before`) saved, so a
        question on the same system prompt and files reads only itself; tokens saved."""
        if self.kv is None or not self._prefix or not self._prefix[0]:
            return 0
        text, ids = self._prefix
        if (self.kv.find(text) or {}).get("text") == text:
            return 0  # saved already
        return self._save(text, ids, "", keep=len(ids))

    def _save(self, text: str, ids: list[int], session: str, keep: int | None = None) -> int:
        """The engine's cache (only its first `keep` tokens, when given: then exactly
        those) saved as `text`'s, whose ids are `ids`: kept when the engine saved at
        least MIN_TOKENS of them, in that order; tokens saved (0: none)."""
        from chatterm.sessions import kv_cache

        if self.kv is None or len(ids) < kv_cache.MIN_TOKENS or self.engine.state() != "ready":
            return 0
        path = self.kv.new_state_path()
        saved = self.engine.save_state(path, keep=keep)
        tokens = saved.get("tokens") or []
        short = len(tokens) < kv_cache.MIN_TOKENS or (keep is not None and len(tokens) != keep)
        if short or tokens != ids[:len(tokens)]:
            kv_cache.remove(path[:-len(".state")])
            return 0
        self.kv.record(path, text, ids, saved["digest"], session)
        return len(tokens)

    def _tokenize(self, text: str) -> list[int]:
        cache = self.cache
        if cache.ids and text.startswith(cache.text):
            return cache.ids + self.encode(text[len(cache.text):], first=False)
        return self.encode(text, first=True)

    def encode(self, text: str, *, first: bool) -> list[int]:
        """Token ids of rendered prompt text (`render`) as the engine is fed them: the
        markup as control tokens, guarded text as plain text; `first`: the text begins
        the prompt (the BOS token put first where the model wants one)."""
        engine = self.engine
        tokenize = lambda piece, special: engine.tokenize(piece, special=special)  # noqa: E731
        ids = self.plain.tokenize(text, tokenize)
        if first and engine.add_bos and engine.bos_id is not None and (not ids or ids[0] != engine.bos_id):
            ids.insert(0, engine.bos_id)
        return ids

    def reply(self, prompt: tuple[str, list[int]], sampling: Decoding, cancelled: Callable[[], bool]) -> Reply:
        # With tools on, a model that starts writing a tool's result itself is stopped there.
        stops = self.stops() + [FAKE_RESULT] if sampling.special_pieces else self.stops()
        return Generation(self.engine, prompt[1], sampling, stops, cancelled,
                          thinking=thinking.opened(prompt[0]))

    def settle(self, prompt: tuple[str, list[int]], reply: Reply) -> int:
        assert isinstance(reply, Generation)
        if reply.finish == Finish.ERROR:
            # The engine failed or died: a new one (perhaps another engine, with
            # another tokenizer) starts from the text, not from these ids.
            self.cache = PromptCache()
            return len(prompt[1])
        text, ids = prompt
        self.cache = PromptCache(text + self.engine.detokenize(reply.tokens, special=True), ids + reply.tokens)
        return len(self.cache.ids)
