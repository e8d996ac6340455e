"""Speculative decoding (docs/guide/engines-and-gpu.md): chatterm's whole reply path with
and without drafts, in the same rounds as llama-bench's decode figure of the same model.

Two tasks. Prompt lookup: "rewrite this 300-line file with one change", the reply copying
the prompt. A draft model: a target/draft pair made from the default model with the
`llama-quantize` of the bench's llama.cpp build (Q8_0 target, Q4_0 draft). Every reply is
greedy, and each mode's text is compared with the text decoded without speculation."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from chatterm import loader
from chatterm.bench import engine as eb
from chatterm.bench import llama_bench
from chatterm.bench.stats import Figure, Target, ratio
from chatterm.bench.terminal import PseudoTerminal
from chatterm.paths import cache_dir

REWRITE_LINES = 300
STORY = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def source_file(lines: int = REWRITE_LINES) -> str:
    """A Python module of `lines` lines, the kind of file people ask to have edited."""
    out: list[str] = []
    i = 0
    while len(out) < lines:
        out += [f"def scale_{i}(values, factor={i + 2}):",
                f'    """Multiply each value by {i + 2} and add the offset {i * 3}."""',
                f"    return [v * factor + {i * 3} for v in values]", ""]
        i += 1
    return "\n".join(out[:lines])


def rewrite_question() -> str:
    return ("Rewrite this file with one change: rename the function scale_7 to stretch_7. "
            "Reply with the whole file and nothing else.\n\n```python\n" + source_file() + "\n```")


def pair(reference: Path | None, default_model: Path) -> tuple[Path, Path]:
    """The target (Q8_0) and draft (Q4_0) made from the default model, once: with the
    llama-quantize built beside llama-bench, else llama.cpp's own quantize call."""
    folder = cache_dir() / "speculation"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for kind in ("Q8_0", "Q4_0"):
        out = folder / f"{default_model.stem.split('.')[0]}.{kind}.gguf"
        if not out.is_file():
            tool = reference.parent / "llama-quantize" if reference else None
            if tool is not None and tool.is_file():
                subprocess.run([str(tool), "--allow-requantize", str(default_model), str(out), kind],
                               check=True, capture_output=True, env=llama_bench.environment())
            else:
                _quantize(default_model, out, kind)
        made.append(out)
    return made[0], made[1]


def _quantize(source: Path, out: Path, kind: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"could not quantize {source} to {kind}")


def _load(model: Path, mode: str, draft: Path | None, args: argparse.Namespace) -> loader.Model:
    loaded = loader.load(loader.RunOptions(model=str(model), threads=args.threads, ctx=8192, speculate=mode,
                                           draft=str(draft) if draft else None))
    loaded.wait_ready()
    return loaded


def _reply(loaded: loader.Model, question: str, tokens: int, terminal: PseudoTerminal) -> tuple[float, str, int]:
    """Decode tokens/s of one greedy reply through chatterm's path into a pty, its text,
    and its prompt's tokens."""
    chat = eb.fresh_chat(loaded, loaded.defaults.updated(temperature=0.0, max_tokens=tokens, seed=0))
    eb.rendered(chat, question, terminal)
    assert chat.last is not None
    return chat.last.tokens_per_s, chat.last.text, chat.last.prompt_tokens


def _real_pair() -> tuple[Path | None, Path | None]:
    """Qwen2.5-Coder 1.5B and 0.5B as bench/fetch_models.py caches them (None: not fetched)."""
    from chatterm.bench.code import real_model

    big, small = real_model("1.5b"), real_model("0.5b")
    return (big, small) if big.is_file() and small.is_file() else (None, None)


def bench_speculation(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    from chatterm.models.catalog import Catalog

    default_model = Catalog.load().find(None).model_path()
    reference = llama_bench.find(args.llama_bench)
    target, draft = pair(reference, default_model)
    tokens = 48 if args.quick else 256
    tasks = {  # (section, model, question, modes compared ("off" first), the draft model)
        "ngram": (f"Speculation: prompt lookup, rewrite a {REWRITE_LINES}-line file", target, rewrite_question(),
                  ["off", "ngram", "auto"], None),
        "story": (f"Speculation: no repetition to find ({target.name})", target, STORY, ["off", "auto"], None),
        "draft": (f"Speculation: draft model {draft.name} for {target.name}", target, STORY, ["off", "draft"], draft),
    }
    real, real_draft = _real_pair()
    if real is not None and real_draft is not None:  # the model people run, with its own small sibling as the draft
        tasks["real"] = (f"Speculation: {real.name}, rewrite a {REWRITE_LINES}-line file, draft {real_draft.name}",
                         real, rewrite_question(), ["off", "auto", "ngram", "draft"], real_draft)
    loads: dict[tuple[str, str], loader.Model | None] = {
        (name, mode): None for name, (_, _, _, modes, _) in tasks.items() for mode in modes}
    rates: dict[tuple[str, str], list[float]] = {}
    same: dict[tuple[str, str], list[bool]] = {}
    depth: dict[str, int] = {}
    tg: dict[str, list[float]] = {}
    try:
        for name, mode in loads:
            _, model, _, _, its_draft = tasks[name]
            loads[(name, mode)] = _load(model, mode, its_draft if mode in ("draft", "auto") else None, args)
        with PseudoTerminal() as terminal:
            for i in range(args.runs):
                for name, (_, model, question, modes, _) in tasks.items():
                    texts = {}
                    for mode in (modes if i % 2 == 0 else modes[::-1]):  # alternating: drift hits both sides
                        loaded = loads[(name, mode)]
                        assert loaded is not None
                        rate, texts[mode], depth[name] = _reply(loaded, question, tokens, terminal)
                        rates.setdefault((name, mode), []).append(rate)
                    for mode in modes[1:]:
                        same.setdefault((name, mode), []).append(texts[mode] == texts["off"])
                    if reference and name in ("ngram", "story"):
                        tg.setdefault(name, []).append(llama_bench.decode_rate(
                            reference, str(model), args.threads, True, tokens, depth[name], q8_cache=True))
    finally:
        for loaded in loads.values():
            if loaded is not None:
                loaded.close()
    for name, (section, _, _, modes, _) in tasks.items():
        for mode in modes:
            figures.append(Figure(section, f"pipeline decode, speculate {mode}", "tok/s", rates[(name, mode)]))
        for mode in modes[1:]:
            speedup = Figure(section, f"{mode} / off", "x", ratio(rates[(name, mode)], rates[(name, "off")]))
            figures.append(speedup)
            identical = 100 * sum(same[(name, mode)]) / len(same[(name, mode)])
            # The default mode's kernels round a batch unlike a single token: a greedy reply
            # with drafts may part at a near-tie (--reproducible: never; tests/test_speculation.py).
            figures.append(Figure(section, f"replies identical to off ({mode})", "%", [identical]))
            if mode == "auto":
                targets.append(Target(f"{name}: auto / off (x)", speedup.median, 0.99, True))
            if name == "ngram" and mode == "ngram":
                figures.append(Figure(section, "ngram / off where the reply copies the prompt", "x", [speedup.median],
                                      note="on a 2-core CPU a batch of k tokens costs about k steps"))
        if name in tg:
            figures.append(Figure(section, f"llama-bench tg{tokens} @ d{depth[name]} (fa on, q8_0 cache)", "tok/s",
                                  tg[name], note=str(reference)))
            best = "ngram" if name == "ngram" else "auto"
            versus = Figure(section, f"pipeline {best} / llama-bench tg", "x",
                            ratio(rates[(name, best)], tg[name]))
            figures.append(versus)
            if name == "ngram":
                targets.append(Target("ngram task: pipeline / llama-bench tg (x)", versus.median, 1.3, True))
    if reference is None:
        print("llama-bench: not found; the speculation section has no llama-bench figure", file=sys.stderr)
        return
    _kernel_cost(reference, default_model, args, figures)


def _kernel_cost(reference: Path, model: Path, args: argparse.Namespace, figures: list[Figure]) -> None:
    """What exact batches cost the default model: llama-bench with chatterm's kernels for
    it (flash attention, Q8_0 cache) against the fastest ones (no flash attention, F16
    cache), prompt and decode, at an empty context and deep in one."""
    section = f"Exact batches: their kernels' cost ({model.name}, llama-bench)"
    for depth in (0, 3000):
        for test in (["-p", "512", "-n", "0"], ["-p", "0", "-n", "64"]):
            name = f"{'pp512' if test[1] == '512' else 'tg64'} @ d{depth}"
            fast = llama_bench.rate(reference, str(model), args.threads, False, False, *test, "-d", str(depth))
            exact = llama_bench.rate(reference, str(model), args.threads, True, True, *test, "-d", str(depth))
            figures += [Figure(section, f"{name}, fa off, F16 cache", "tok/s", [fast]),
                        Figure(section, f"{name}, fa on, Q8_0 cache (chatterm)", "tok/s", [exact]),
                        Figure(section, f"{name}: exact / fastest", "%", [100 * exact / fast])]
