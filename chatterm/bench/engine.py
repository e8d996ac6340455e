"""Each engine three ways, on the same model file and settings:

- raw: the engine in this process, driven by a bare loop: the native decode and
  sampling calls and nothing else (llama.cpp's C API; ctransformers' `LLM.eval` and
  `LLM.sample`, the loop its own `LLM.generate` runs); the same bare loop through the
  engine worker's pipe measures what isolation costs;
- pipeline: chatterm's path a user sees: chat template -> `Conversation` -> `Generation` ->
  the isolated engine worker and its pipe -> `StreamRenderer` painting Markdown into a
  pseudo terminal;
- conversation: time to first token for every turn of a multi-turn chat.

Decode is greedy and goes on past end-of-generation, so every run streams the same
number of tokens; rates count tokens after the first (the first one pays for the prompt).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from chatterm import engines, loader
from chatterm.bench.terminal import PseudoTerminal
from chatterm.conversation import Conversation
from chatterm.conversation.local import LocalBackend
from chatterm.engines.base import Decoding, Engine, LoadOptions, Sampling
from chatterm.loader import Model, RunOptions
from chatterm.ui.render import StreamRenderer

DECODE_QUESTION = "Write a long story about a lighthouse keeper who finds a message in a bottle."
# Ten questions of similar length that get long answers: with 120-token replies the
# history is ~1,500 tokens by the tenth turn.
QUESTIONS = [
    "Explain in detail how a steam engine works, step by step.",
    "Describe the water cycle in detail, with examples from nature.",
    "Explain how vaccines train the immune system, in detail.",
    "Write a detailed guide to planting a vegetable garden in spring.",
    "Explain in detail how a computer CPU executes a program.",
    "Describe in detail the history of the printing press in Europe.",
    "Explain in detail how airplanes stay in the air during flight.",
    "Describe in detail how bread is made from wheat to loaf.",
    "Explain in detail how the internet sends data between computers.",
    "Describe in detail the life cycle of a star like the Sun.",
]
PROMPT_TOKENS = 128  # prompt-processing figure: a 128-token prompt, like llama-bench pp128


def load(engine: str, threads: int) -> Model:
    """chatterm's chat on `engine`, loaded (in its worker) before anything is timed."""
    loaded = loader.load(RunOptions(engine=engine, threads=threads))
    loaded.backend.engine.wait_ready()
    return loaded


def local_engine(loaded: Model) -> Engine:
    """The engine of a local model (isolated in its worker)."""
    backend = loaded.backend
    assert isinstance(backend, LocalBackend)
    return backend.engine


def load_raw(loaded: Model, threads: int) -> Engine:
    """The same engine and model in this process, with the same context size."""
    return engines.load(loaded.engine_name, LoadOptions(path=Path(loaded.path), n_ctx=loaded.n_ctx, threads=threads))


def fresh_chat(loaded: Model, sampling: Sampling) -> Conversation:
    """A new conversation on the loaded engine, the engine's evaluated state forgotten."""
    old = loaded.backend
    assert isinstance(old, LocalBackend)
    old.engine.reset()
    return Conversation(dataclasses.replace(loaded, backend=LocalBackend(old.engine, old.template, old.stop)),
                        system=loaded.spec.system, defaults=sampling)


def greedy(max_tokens: int, repeat_penalty: float = 1.0) -> Decoding:
    """The end-of-generation check still runs (it is part of the per-token cost) but
    never ends the reply."""
    return Decoding(temperature=0.0, repeat_penalty=repeat_penalty, max_tokens=max_tokens, seed=0,
                    ignore_eog=True)


def decode_prompt(loaded: Model, n: int) -> list[int]:
    chat = fresh_chat(loaded, greedy(n))
    prompt = chat.backend.measure([*chat.messages, {"role": "user", "content": DECODE_QUESTION}], None)[1]
    return list(prompt[1])


# ------------------------------------------------------------------ raw engine loops
def raw_decode(engine: Engine, prompt: Sequence[int], n: int) -> float:
    """Tokens/s of the bare engine loop for `n` tokens (after the first)."""
    engine.reset()
    first = 0.0
    count = 0
    stream = engine.generate(prompt, greedy(n))
    for _ in stream:
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count == n:
            break
    elapsed = time.perf_counter() - first
    stream.close()
    return (count - 1) / elapsed


def raw_prompt(engine: Engine, text_ids: Sequence[int]) -> float:
    """Prompt tokens/s: PROMPT_TOKENS tokens into an empty context, to the first token."""
    ids = list(text_ids[:PROMPT_TOKENS])
    engine.reset()
    start = time.perf_counter()
    stream = engine.generate(ids, greedy(1))
    next(stream)
    elapsed = time.perf_counter() - start
    stream.close()
    return len(ids) / elapsed


def long_text_ids(engine: Engine) -> list[int]:
    text = " ".join(QUESTIONS) * 4
    ids = engine.tokenize(text)
    assert len(ids) >= PROMPT_TOKENS, len(ids)
    return ids


# ------------------------------------------------------------------ chatterm's path
def pipeline_decode(loaded: Model, n: int, terminal: PseudoTerminal, tools: str = "",
                    described: str = "") -> tuple[float, int]:
    """Tokens/s through template, chat, generation and the Markdown renderer into a
    pseudo terminal, as the REPL runs a reply; and the tokens streamed. `tools`: the
    tools offered (their call parser on every token, their grammar waiting for a call);
    `described`: tools off, but their description in the system prompt all the same
    (the same prompt as with them on: only the per-token work differs)."""
    chat = fresh_chat(loaded, greedy(n))
    if tools:
        from chatterm.tools.toolbox import Toolbox, select

        chat.toolbox = Toolbox(select(tools))
    elif described:
        from chatterm.tools import prompting
        from chatterm.tools.toolbox import Toolbox, select

        chat.set_system((chat.system or "") + "\n\n" + prompting.describe(Toolbox(select(described)).schemas()))
    rendered(chat, DECODE_QUESTION, terminal)
    assert chat.last is not None
    return chat.last.tokens_per_s, chat.last.n_tokens


def rendered(chat: Conversation, question: str, terminal: PseudoTerminal) -> None:
    """Send `question` and render the reply's text into `terminal`, as the REPL does."""
    renderer = StreamRenderer(terminal.console())
    try:
        for chunk in chat.send(question):
            if isinstance(chunk, str):
                renderer.feed(chunk)
    finally:
        renderer.finish()


def conversation(loaded: Model, turns: int, reply_tokens: int,
                 terminal: PseudoTerminal) -> list[tuple[float, int]]:
    """(time to first token in s, prompt tokens) for each turn of one conversation.
    The clock starts when the message is sent (template and tokenizing included) and
    stops when the first text reaches the renderer."""
    sampling = loaded.defaults.updated(temperature=0.0, max_tokens=reply_tokens, seed=0)
    chat = fresh_chat(loaded, sampling)
    result = []
    for question in (QUESTIONS * (turns // len(QUESTIONS) + 1))[:turns]:
        renderer = StreamRenderer(terminal.console())
        start = time.perf_counter()
        first = None
        try:
            for chunk in chat.send(question):
                if first is None:
                    first = time.perf_counter() - start
                if isinstance(chunk, str):
                    renderer.feed(chunk)
        finally:
            renderer.finish()
        assert chat.last is not None
        result.append((first if first is not None else float("nan"), chat.last.prompt_tokens))
    return result


def warm_up(loaded: Model, raw: Engine) -> None:
    """One short reply first: the first evaluation allocates buffers and pages the model in."""
    chat = fresh_chat(loaded, greedy(8))
    for _ in chat.send("Hello"):
        pass
    raw_decode(raw, getattr(chat.last, "prompt", [1]), 8)
