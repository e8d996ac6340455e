"""Whole-process figures, each a fresh process as a user starts it: `chatterm --help`,
and a one-shot answer (time to first byte on stdout, total, peak RSS) against a minimal
script that loads the same model with the same engine and settings and streams the same
greedy reply with the engine's own API (no repeat penalty: llama-cpp-python's API
does not count prompt tokens for it, chatterm does as llama.cpp's own tools do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ONE_SHOT_QUESTION = "Write a short poem about the sea."


@dataclass
class ProcessRun:
    first_byte_s: float  # from process start to the first byte of the answer
    total_s: float
    max_rss_kb: int
    output: bytes


def chatterm_command() -> list[str]:
    script = Path(sys.executable).with_name("chatterm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chatterm"]


def run(command: list[str]) -> ProcessRun:
    """Run to completion, stdout piped; stdin closed so nothing waits on it."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.read(1)
    first_s = time.perf_counter() - start
    output = first + child.stdout.read()
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    total = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"{command[0]} exited {child.returncode}: {errors.decode(errors='replace')[-500:]}")
    return ProcessRun(first_s, total, usage.ru_maxrss, output)


def help_time() -> float:
    return run([*chatterm_command(), "--help"]).total_s


def chatterm_one_shot(engine: str, threads: int, max_tokens: int) -> ProcessRun:
    return run([*chatterm_command(), "--engine", engine, "--threads", str(threads),
                "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", str(max_tokens),
                ONE_SHOT_QUESTION])


# The minimal scripts: what a user writes against each library's public API.
_LLAMA_CPP_SCRIPT = """
import json, sys
import llama_cpp.llama_cpp as lib
from llama_cpp import Llama
a = json.loads(sys.argv[1])
if not a["repack"]:  # a CPU with AMX (chatterm.models.hardware.repack_off_reason): Llama has no option for it
    defaults = lib.llama_model_default_params
    def no_repack():
        params = defaults()
        params.use_extra_bufts = False
        return params
    lib.llama_model_default_params = no_repack
cache = {"type_k": 8, "type_v": 8} if a["q8_cache"] else {}  # GGML_TYPE_Q8_0, as chatterm runs this model
llm = Llama(model_path=a["path"], n_ctx=a["n_ctx"], n_threads=a["threads"],
            n_threads_batch=a["threads"], flash_attn=a["flash_attn"], verbose=False, **cache)
for chunk in llm.create_chat_completion(a["messages"], stream=True, temperature=0.0,
                                        max_tokens=a["max_tokens"], repeat_penalty=1.0):
    text = chunk["choices"][0]["delta"].get("content")
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
print()
"""

# ctransformers' own tokenizer mangles byte-level BPE (docs/engines.md), so the
# script is given the prompt's token ids and prints raw pieces; the work is the same.
_CTRANSFORMERS_SCRIPT = """
import json, sys
from ctransformers import LLM, Config
a = json.loads(sys.argv[1])
llm = LLM(a["path"], "gguf", lib=a["lib"],
          config=Config(context_length=a["n_ctx"], threads=a["threads"], batch_size=64))
for token in llm.generate(a["ids"], top_k=1, temperature=1.0, repetition_penalty=1.0,
                          threads=a["threads"], batch_size=64):
    sys.stdout.buffer.write(llm.detokenize([token], decode=False))
    sys.stdout.flush()
    a["max_tokens"] -= 1
    if a["max_tokens"] <= 0:
        break
print()
"""


def minimal_one_shot(engine: str, threads: int, max_tokens: int, setup: dict) -> ProcessRun:
    """`setup`: the model path, n_ctx, messages, prompt ids and repeat penalty chatterm uses."""
    args = {**setup, "threads": threads, "max_tokens": max_tokens}
    script = _LLAMA_CPP_SCRIPT if engine == "llama.cpp" else _CTRANSFORMERS_SCRIPT
    if engine != "llama.cpp":
        args["path"] = setup["compat_path"]
    return run([sys.executable, "-c", script, json.dumps(args)])
