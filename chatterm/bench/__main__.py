"""python -m chatterm.bench [--runs N] [--json FILE] [--quick] ...  (docs/guide/performance.md)"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path

from chatterm import engines
from chatterm.bench import engine as eb
from chatterm.bench import llama_bench, process, renderer, report
from chatterm.bench.stats import Figure, Target, ratio
from chatterm.bench.terminal import PseudoTerminal
from chatterm.engines.base import default_threads
from chatterm.models import hardware


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chatterm.bench", description=__doc__)
    p.add_argument("--engine", choices=["all", *engines.ENGINE_NAMES], default="all")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--runs", type=int, default=9, help="repetitions of every measurement")
    p.add_argument("--decode-tokens", type=int, default=256)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--reply-tokens", type=int, default=120, help="reply length in the multi-turn chat")
    p.add_argument("--render-tokens", default="1000,4000,16000")
    p.add_argument("--one-shot-tokens", type=int, default=64)
    p.add_argument("--process-runs", type=int, default=15,
                   help="repetitions of the whole-process timings (cheap, and the noisiest)")
    p.add_argument("--sessions", default="1000,5000", help="saved-session counts for the listing and search")
    p.add_argument("--only", default="render,engine,llama-bench,process,repack,sessions,long,tools,speculation,resume",
                   help="sections to run, comma-separated")
    p.add_argument("--repack-models", default="", metavar="PATH,...",
                   help="more GGUF files for the weight-repacking section (default: the default model only)")
    p.add_argument("--llama-bench", metavar="PATH", help="llama-bench binary (default: bench/build-llama-bench.sh's)")
    p.add_argument("--code-model", metavar="PATH", help="the model of the code section (default: Qwen2.5-Coder "
                   "1.5B as bench/fetch_models.py caches it)")
    p.add_argument("--limit", type=int, help="code section: at most this many HumanEval problems")
    p.add_argument("--every", type=int, default=1, help="code section: every K-th HumanEval problem")
    p.add_argument("--modes", default="plain,loop,verified",
                   help="code section: plain, loop, verified (comma-separated)")
    p.add_argument("--log-dir", help="code section: write each problem's transcript here")
    p.add_argument("--resume-model", metavar="PATH", help="resume section: the model (default: Qwen2.5-Coder 1.5B "
                   "from bench/fetch_models.py's cache, else the default model)")
    p.add_argument("--resume-tokens", type=int, default=4000, help="resume section: the session's size in tokens")
    p.add_argument("--train-model", metavar="PATH", help="train section: the model to adapt (default: "
                   "Qwen2.5-Coder 0.5B as bench/fetch_models.py caches it)")
    p.add_argument("--train-epochs", type=int, default=3, help="train section: chatterm train's --epochs")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test, not figures")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.decode_tokens, args.turns, args.reply_tokens, args.process_runs = 1, 8, 2, 8, 1
        args.render_tokens, args.one_shot_tokens, args.sessions = "100,200,400", 4, "50"
    args.render_tokens = [int(x) for x in args.render_tokens.split(",")]
    args.sessions = [int(x) for x in args.sessions.split(",")]
    args.only = set(args.only.split(","))
    return args


def bench_renderer(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    section = "Renderer (synthetic Markdown with code, into a pseudo terminal)"
    times: dict[int, list[float]] = {}
    with PseudoTerminal() as terminal:
        renderer.render_time(renderer.synthetic_tokens(200), terminal)  # imports, lexers, caches
        for _ in range(args.runs):
            for n in args.render_tokens:
                times.setdefault(n, []).append(renderer.render_time(renderer.synthetic_tokens(n), terminal))
    for n, values in times.items():
        figures.append(Figure(section, f"{n:,} tokens", "tok/s", [n / t for t in values]))
    small, large = args.render_tokens[0], args.render_tokens[-1]
    grow = Figure(section, f"time({large:,}) / time({small:,})", "x", ratio(times[large], times[small]))
    figures.append(grow)
    slowest = min(statistics.median(n / t for t in v) for n, v in times.items())
    targets.append(Target("renderer tokens/s (slowest size, median)", slowest, 20_000, True))
    targets.append(Target(f"renderer time({large:,})/time({small:,})", grow.median,
                          20 * large / small / 16, False))


def bench_engine(name: str, args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    section = f"Engine {name} (default model, {args.threads} threads, greedy)"
    loaded = eb.load(name, args.threads)
    engine = eb.load_raw(loaded, args.threads)
    wants_reference = name == "llama.cpp" and "llama-bench" in args.only
    reference = llama_bench.find(args.llama_bench) if wants_reference else None
    if wants_reference and reference is None:
        print("llama-bench: not found; build it with bench/build-llama-bench.sh (or pass --llama-bench)",
              file=sys.stderr)
    flash_attn = bool(getattr(engine, "flash_attn", False))
    q8_cache = bool(getattr(engine, "exact_batches", False))  # llama-bench with chatterm's cache type
    model = loaded.path
    try:
        eb.warm_up(loaded, engine)
        prompt = eb.decode_prompt(loaded, args.decode_tokens)
        long_ids = eb.long_text_ids(engine)
        raw: list[float] = []
        worker: list[float] = []
        pipe: list[float] = []
        pp: list[float] = []
        tg: list[float] = []
        with PseudoTerminal() as terminal:
            for i in range(args.runs):
                # Interleaved, in alternating order: this machine drifts by 15-20%, and
                # drift must hit both sides of a ratio alike.
                sides = [raw, worker, pipe] if i % 2 == 0 else [pipe, worker, raw]
                for side in sides:
                    if side is pipe:
                        side.append(eb.pipeline_decode(loaded, args.decode_tokens, terminal)[0])
                    else:  # the same bare loop, in this process or through the worker's pipe
                        side.append(eb.raw_decode(engine if side is raw else eb.local_engine(loaded), prompt,
                                                  args.decode_tokens))
                pp.append(eb.raw_prompt(engine, long_ids))
                if reference:
                    tg.append(llama_bench.decode_rate(reference, model, args.threads, flash_attn,
                                                      args.decode_tokens, len(prompt), q8_cache))
            turns: list[list[tuple[float, int]]] = []
            for _ in range(args.runs):
                turns.append(eb.conversation(loaded, args.turns, args.reply_tokens, terminal))
    finally:
        engine.close()
        loaded.backend.engine.close()
        del loaded, engine
        gc.collect()
    share = Figure(section, "pipeline / raw engine", "%", ratio(pipe, raw, 100))
    figures += [Figure(section, f"raw engine decode ({args.decode_tokens} tokens)", "tok/s", raw,
                       note=f"prompt {len(prompt)} tokens"),
                Figure(section, f"raw engine prompt ({eb.PROMPT_TOKENS} tokens)", "tok/s", pp),
                Figure(section, "the same loop through the engine worker's pipe", "tok/s", worker),
                Figure(section, "engine worker / raw engine", "%", ratio(worker, raw, 100)),
                Figure(section, "chatterm pipeline decode (to a pty)", "tok/s", pipe), share]
    targets.append(Target(f"{name}: pipeline / raw engine decode (%)", share.median, 97, True))
    if tg and reference is not None:
        fa = "on" if flash_attn else "off"
        versus = Figure(section, "pipeline / llama-bench tg", "%", ratio(pipe, tg, 100))
        figures += [Figure(section, f"llama-bench tg{args.decode_tokens} @ d{len(prompt)} (fa {fa})", "tok/s",
                           tg, note=str(reference)),
                    Figure(section, f"llama-bench pp{eb.PROMPT_TOKENS} (fa {fa})", "tok/s",
                           llama_bench.prompt_rates(reference, model, args.threads, flash_attn,
                                                    args.runs, q8_cache)),
                    versus]
        targets.append(Target(f"{name}: pipeline / llama-bench tg (%)", versus.median, 95, True))
    for i in range(args.turns):
        figures.append(Figure(section, f"time to first token, turn {i + 1}", "ms",
                              [run[i][0] * 1000 for run in turns], note=f"prompt {turns[0][i][1]:,} tokens"))
    growth = Figure(section, f"TTFT turn {args.turns} / turn 1", "x", [r[-1][0] / r[0][0] for r in turns])
    figures.append(growth)
    targets.append(Target(f"{name}: TTFT turn {args.turns} / turn 1", growth.median, 1.3, False))


def bench_repack(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    """llama.cpp with and without weight repacking, which CPUs with AMX must do without
    (hardware.repack_off_reason): what the others would lose if it were off everywhere."""
    from chatterm.engines.base import LoadOptions
    from chatterm.models.catalog import Catalog

    if hardware.repack_off_reason():
        print("repack: skipped on this CPU (AMX: repacked weights crash llama.cpp)", file=sys.stderr)
        return
    models = [Catalog.load().find(None).model_path(), *(Path(p) for p in args.repack_models.split(",") if p)]
    for model in models:
        section = f"Weight repacking, llama.cpp in process ({model.name})"
        loaded = {safe: engines.load("llama.cpp", LoadOptions(path=model, n_ctx=2048, threads=args.threads,
                                                              gpu_layers=0, safe=safe)) for safe in (False, True)}
        ids = eb.long_text_ids(loaded[False])
        rates: dict[tuple[bool, str], list[float]] = {(safe, k): [] for safe in loaded for k in ("decode", "prompt")}
        try:
            for i in range(args.runs):
                for safe in ((False, True) if i % 2 == 0 else (True, False)):
                    rates[(safe, "decode")].append(eb.raw_decode(loaded[safe], ids[:40], args.decode_tokens))
                    rates[(safe, "prompt")].append(eb.raw_prompt(loaded[safe], ids))
        finally:
            for engine in loaded.values():
                engine.close()
        for what in ("decode", "prompt"):
            figures += [Figure(section, f"{what}, repacking on", "tok/s", rates[(False, what)]),
                        Figure(section, f"{what}, repacking off", "tok/s", rates[(True, what)]),
                        Figure(section, f"{what}: off / on", "%",
                               ratio(rates[(True, what)], rates[(False, what)], 100))]


def bench_process(args: argparse.Namespace, names: list[str], figures: list[Figure],
                  targets: list[Target]) -> None:
    section = "Whole process (fresh process each run; default model)"
    helps = [process.help_time() for _ in range(args.process_runs)]
    figures.append(Figure(section, "chatterm --help", "s", helps))
    targets.append(Target("chatterm --help (s)", statistics.median(helps), 0.15, False))
    setup = one_shot_setup()
    for name in names:
        ours: list[process.ProcessRun] = []
        theirs: list[process.ProcessRun] = []
        for i in range(args.process_runs):  # interleaved, alternating which goes first
            first, second = (ours, theirs) if i % 2 == 0 else (theirs, ours)
            for side in (first, second):
                side.append(process.chatterm_one_shot(name, args.threads, args.one_shot_tokens) if side is ours
                            else process.minimal_one_shot(name, args.threads, args.one_shot_tokens, setup))
        label = f"{name} one-shot ({args.one_shot_tokens} tokens)"
        figures += [
            Figure(section, f"chatterm {label}: first byte", "s", [r.first_byte_s for r in ours]),
            Figure(section, f"chatterm {label}: total", "s", [r.total_s for r in ours]),
            Figure(section, f"chatterm {label}: peak RSS", "MB", [r.max_rss_kb / 1024 for r in ours]),
            Figure(section, f"minimal script {label}: first byte", "s", [r.first_byte_s for r in theirs]),
            Figure(section, f"minimal script {label}: total", "s", [r.total_s for r in theirs]),
            Figure(section, f"minimal script {label}: peak RSS", "MB", [r.max_rss_kb / 1024 for r in theirs]),
        ]
        share = Figure(section, f"{name}: chatterm total / minimal script total", "x",
                       ratio([r.total_s for r in ours], [r.total_s for r in theirs]))
        figures.append(share)
        targets.append(Target(f"{name}: one-shot total / minimal script", share.median, 1.0, False))
        if name == "llama.cpp":  # same text expected: same template, greedy, the same (fastest) kernels
            same = 100 * sum(a.output.strip() == b.output.strip() for a, b in zip(ours, theirs)) / len(ours)
            targets.append(Target(f"{name}: one-shot text the same as the minimal script's (%)", same, 100, True))


def bench_sessions(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    from chatterm.bench import archive

    for n in args.sessions:
        with archive.saved_sessions(n) as size:
            section = f"Saved sessions: {n:,} files, {size / 1e6:.0f} MB (chatterm sessions)"
            archive.list_time()  # imports, and the files into the page cache
            figures.append(Figure(section, "list (read, check, summarise each)", "s",
                                  [archive.list_time() for _ in range(args.runs)]))
            for label, text in (("rare word, 1 session", archive.RARE), ("Chinese, a third of them", "按键查找"),
                                ("English, two thirds", "dictionary")):
                runs = [archive.search_time(text) for _ in range(args.runs)]
                figures.append(Figure(section, f"--search {label}", "s", [t for t, _ in runs],
                                      note=f"{runs[0][1]:,} hits"))
            if n == max(args.sessions):
                rare = next(f for f in figures[::-1] if "rare word" in f.name)
                targets.append(Target(f"--search of {n:,} sessions, rare word (s)", rare.median, 1.0, False))


def bench_long(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    from chatterm.bench import long_sessions

    for n, n_ctx in ((600, 2048), (1000, 8192), (20000, 8192)):
        figures.append(Figure("Long sessions: fitting the context window (before each reply)",
                              f"{n:,} messages into --ctx {n_ctx:,}", "s",
                              long_sessions.fit_times(n, n_ctx, args.runs, args.threads)))
    for n in (40_000, 1_000_000):
        for label, runs in long_sessions.archive_times(n, args.runs).items():
            figures.append(Figure(f"Long sessions: one of {n:,} messages", label, "s", runs))
    fit = next(f for f in figures[::-1] if f.name.startswith("600 messages"))
    targets.append(Target("fit 600 messages into 2,048 tokens (s)", fit.median, 0.5, False))


def bench_tools(args: argparse.Namespace, figures: list[Figure], targets: list[Target]) -> None:
    from chatterm.bench import tool_parsing
    from chatterm.bench.renderer import synthetic_tokens

    section = "Tools: what a token costs with tools off and on"
    n = 2000 if args.quick else 20000
    plain, with_calls = synthetic_tokens(n), tool_parsing.pieces_with_calls(n)
    off, on, calls = [], [], []
    for _ in range(args.runs):
        off.append(tool_parsing.take_ns_per_token(plain, tools=False))
        on.append(tool_parsing.take_ns_per_token(plain, tools=True))
        calls.append(tool_parsing.take_ns_per_token(with_calls, tools=True))
    figures += [Figure(section, f"answer path, tools off ({n:,} tokens)", "ns/token", off),
                Figure(section, "answer path, tools on: call parser, no call", "ns/token", on),
                Figure(section, "answer path, tools on: a call every 500 tokens", "ns/token", calls)]
    if "llama.cpp" not in engines.ENGINE_NAMES or not engines.installed("llama.cpp"):
        return
    loaded = eb.load("llama.cpp", args.threads)
    try:
        loaded.wait_ready()
        without: list[float] = []
        with_tools: list[float] = []
        with PseudoTerminal() as terminal:
            eb.pipeline_decode(loaded, 8, terminal, "all")  # warm: buffers, pages, the template worker
            for i in range(args.runs):
                for side in ([without, with_tools] if i % 2 == 0 else [with_tools, without]):
                    if side is with_tools:
                        side.append(eb.pipeline_decode(loaded, args.decode_tokens, terminal, tools="all")[0])
                    else:  # the same prompt, the tools described in it, but off
                        side.append(eb.pipeline_decode(loaded, args.decode_tokens, terminal, described="all")[0])
    finally:
        loaded.close()
    figures += [Figure(section, f"pipeline decode, tools off, same prompt ({args.decode_tokens} tokens, llama.cpp)",
                       "tok/s", without),
                Figure(section, "pipeline decode, all tools on", "tok/s", with_tools),
                Figure(section, "tools on / off", "%", ratio(with_tools, without, 100))]
    targets.append(Target("pipeline decode with tools on, % of off", figures[-1].median, 97, True))


def one_shot_setup() -> dict:
    """What chatterm's one-shot uses, for the minimal scripts to use too."""
    from chatterm.conversation.templates import resolve
    from chatterm.engines.base import context_size
    from chatterm.engines.ctransformers import compat
    from chatterm.engines.ctransformers.bpe_tokenizer import BPETokenizer
    from chatterm.engines.ctransformers.engine import cpu_library
    from chatterm.models import gguf
    from chatterm.models.catalog import Catalog
    from chatterm.models.hardware import repack_off_reason

    spec = Catalog.load().find(None)
    parsed = gguf.read(spec.model_path())
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    messages.append({"role": "user", "content": process.ONE_SHOT_QUESTION})
    tokenizer = BPETokenizer.from_gguf(parsed)
    text = resolve(spec.template, parsed.chat_template, bos="", eos="").render(messages, add_generation_prompt=True)
    flash_attn = exact = False
    if engines.installed("llama.cpp"):
        from chatterm.engines.llamacpp import bindings, flash_attention
        from chatterm.models.hardware import llamacpp_gpu_layers
        gpu = llamacpp_gpu_layers("auto", bindings().llama_supports_gpu_offload())[0]
        flash_attn = flash_attention(gpu)  # the default mode's kernels (reproducible mode is opt-in)
    return {"path": str(spec.model_path()), "compat_path": str(compat.compat_path(parsed)),
            "flash_attn": flash_attn, "q8_cache": exact, "repack": repack_off_reason() is None,
            "n_ctx": context_size(spec.context_length, parsed.context_length),
            "messages": messages, "ids": tokenizer.encode(text), "lib": cpu_library()}


def progress(what: str) -> None:
    print(f"chatterm.bench: {what} ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in engines.ENGINE_NAMES if args.engine in ("all", n) and engines.installed(n)]
    header = {"machine": report.machine(),
              "settings": {"threads": args.threads, "runs": args.runs, "engines": ", ".join(names),
                           "decode tokens": args.decode_tokens, "turns": args.turns,
                           "reply tokens": args.reply_tokens}}
    figures: list[Figure] = []
    targets: list[Target] = []
    # Whole processes first, while this one is small: a child's peak RSS counts the
    # memory of the process that spawned it until it execs.
    if "process" in args.only:
        progress("whole-process timings")
        bench_process(args, names, figures, targets)
    if "render" in args.only:
        progress("renderer")
        bench_renderer(args, figures, targets)
    if "engine" in args.only:
        for name in names:
            progress(f"engine {name}")
            bench_engine(name, args, figures, targets)
    if "repack" in args.only and "llama.cpp" in names:
        progress("weight repacking")
        bench_repack(args, figures, targets)
    if "sessions" in args.only:
        progress("saved sessions")
        bench_sessions(args, figures, targets)
    if "long" in args.only:
        progress("long sessions")
        bench_long(args, figures, targets)
    if "speculation" in args.only and "llama.cpp" in names:
        from chatterm.bench.speculation import bench_speculation

        progress("speculative decoding")
        bench_speculation(args, figures, targets)
    if "tools" in args.only:
        progress("tools")
        bench_tools(args, figures, targets)
    if "resume" in args.only and "llama.cpp" in names:
        from chatterm.bench.resume import bench_resume

        progress("a long chat resumed, with and without its saved cache")
        bench_resume(args, figures, targets)
    if "train" in args.only:
        from chatterm.bench.train import bench_train

        progress("train (sessions rated, chatterm train, base vs adapter)")
        bench_train(args, figures, targets)
    if "code" in args.only:
        from chatterm.bench.code import bench_code

        progress("code (HumanEval through the one-shot path)")
        bench_code(args, figures, targets)
    report.print_table(sys.stdout, header, figures, targets)
    if args.json:
        report.write_json(args.json, header, figures, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
