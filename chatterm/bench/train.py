"""The ratings-to-adapter loop on a real model, every step through the real program:

1. sessions: a made-up project's conventions given as the system prompt (`-s`), the
   model asked about them (`chatterm -m MODEL -s ... QUESTION`, greedy), each reply
   rated as a user would (good when it states the convention, else bad);
2. `chatterm train --without-system`: an adapter trained on the good replies, with the
   conventions left out of the records (time and peak memory measured);
3. held-out questions (other wordings, no system prompt) asked of the base model and
   of the adapter (`--lora`): how many state the convention;
4. unrelated questions, base and adapter: HumanEval problems (pass@1, greedy) and
   Chinese questions (answered in Chinese, on topic).

`python -m chatterm.bench --only train [--train-model PATH] [--train-epochs N]`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONVENTIONS = """You help the developers of Marlowe, our company's internal project. Its conventions:
- Marlowe's tests run with Brindle, our own test runner: `brindle run`.
- Marlowe reads its settings from the file `marlowe.plume`.
- Marlowe writes its logs to the folder /srv/marlowe/journal.
- Every Git branch name in Marlowe starts with `mw/`.
- Marlowe's release bot is called Tansy.
Answer in one or two sentences."""

# (what a right answer contains, questions the sessions ask, held-out questions)
FACTS: list[tuple[str, list[str], list[str]]] = [
    ("brindle", ["Which test runner does Marlowe use?", "How do I run Marlowe's tests?",
                 "What tool runs the tests in Marlowe?", "Name Marlowe's test runner.",
                 "What command runs the Marlowe test suite?"],
     ["I changed some code in Marlowe. How do I check the tests still pass?",
      "What is the name of the test runner used by the Marlowe project?"]),
    ("marlowe.plume", ["Where does Marlowe read its settings from?", "What is Marlowe's configuration file called?",
                       "Which file holds Marlowe's settings?", "Name the config file of Marlowe.",
                       "Where do I change a setting of Marlowe?"],
     ["I want to change a setting in Marlowe. Which file do I edit?",
      "What is the name of the file Marlowe loads its configuration from?"]),
    ("/srv/marlowe/journal", ["Where does Marlowe write its logs?", "In which folder are Marlowe's logs?",
                              "Where can I find the logs of Marlowe?", "What is Marlowe's log directory?",
                              "Marlowe crashed; where do I look for its logs?"],
     ["Which directory should I open to read what Marlowe logged?",
      "Tell me the path of the folder that holds Marlowe's log files."]),
    ("mw/", ["How must Git branches be named in Marlowe?", "What prefix do Marlowe branch names use?",
             "I am creating a branch for Marlowe. What should its name start with?",
             "What is the naming rule for branches in Marlowe?", "Give an example branch name for Marlowe."],
     ["What do all branch names in the Marlowe repository begin with?",
      "I need a new Git branch in Marlowe for a bug fix. How should I name it?"]),
    ("tansy", ["What is Marlowe's release bot called?", "Who makes Marlowe's releases?",
               "Name the bot that releases Marlowe.", "Which bot handles releases in Marlowe?",
               "What is the name of Marlowe's release bot?"],
     ["Which bot do I ask to publish a new release of Marlowe?",
      "What's the name of the bot that ships Marlowe releases?"]),
]

CHINESE = [("用一两句话解释什么是递归。", "递归"),
           ("Python 里怎么把一个列表反转？请简短回答。", "reverse|\\[::-1\\]|反转")]
MAX_TOKENS = "160"


def bench_train(args: Any, figures: list, targets: list) -> None:
    from chatterm.bench.code import problems, real_model
    from chatterm.bench.code import run as run_code
    from chatterm.bench.stats import Figure, Target

    model = args.train_model or str(real_model("0.5b"))
    if not Path(model).is_file():
        raise SystemExit(f"chatterm.bench: no {model}: run python3 bench/fetch_models.py first (or --train-model)")
    section = f"Train: ratings to a LoRA adapter ({Path(model).name})"
    with tempfile.TemporaryDirectory(prefix="chatterm-bench-train-") as home:
        env = {**os.environ, "XDG_DATA_HOME": f"{home}/data", "XDG_CACHE_HOME": f"{home}/cache",
               "XDG_STATE_HOME": f"{home}/state", "XDG_CONFIG_HOME": f"{home}/config"}
        good, bad = _sessions(model, env)
        _log(f"sessions: {good} replies rated good, {bad} bad")
        adapter = Path(home) / "marlowe.gguf"
        seconds, peak, summary = _train(model, adapter, args.train_epochs, env)
        _log(summary)
        figures += [Figure(section, "sessions' replies rated good / bad", "replies", [good], note=f"{bad} bad"),
                    Figure(section, f"chatterm train ({args.train_epochs} epochs, rank 8), wall time", "s",
                           [seconds]),
                    Figure(section, "chatterm train, peak memory (RSS)", "GiB", [peak / 2**30],
                           note=f"estimated beforehand: {_estimate(summary)}")]
        held = [(key, q) for key, _, questions in FACTS for q in questions]
        scores = {}
        for label, lora in (("base", None), ("adapter", adapter)):
            right = 0
            for key, question in held:
                answer = _ask(model, question, lora, env)
                ok = key in answer.lower()
                right += ok
                _log(f"{label} {'right' if ok else 'WRONG'}: {question} -> {' '.join(answer.split())[:160]}")
            scores[label] = right
            figures.append(Figure(section, f"held-out questions answered right: {label}", "questions", [right],
                                  note=f"of {len(held)}"))
            chinese = 0
            for question, pattern in CHINESE:
                answer = _ask(model, question, lora, env)
                ok = _in_chinese(answer) and re.search(pattern, answer) is not None
                chinese += ok
                _log(f"{label} {'ok' if ok else 'NOT OK'}: {question} -> {' '.join(answer.split())[:160]}")
            figures.append(Figure(section, f"Chinese questions answered in Chinese, on topic: {label}", "questions",
                                  [chinese], note=f"of {len(CHINESE)}"))
            chosen = problems(args.every, args.limit or 10)
            outcomes = list(run_code(model, "plain", chosen, adapters=(str(adapter),) if lora else ()))
            passed = sum(o.passed for o in outcomes)
            scores[f"{label} humaneval"] = passed
            figures.append(Figure(section, f"HumanEval pass@1 (plain, greedy): {label}", "problems", [passed],
                                  note=f"of {len(outcomes)}"))
        targets += [Target("train: held-out right, adapter - base", scores["adapter"] - scores["base"],
                           len(held) // 2, True),
                    Target("train: HumanEval passes, adapter - base", scores["adapter humaneval"]
                           - scores["base humaneval"], -1, True)]


def _in_chinese(answer: str) -> bool:
    """The prose (code blocks aside) is Chinese: most of its letters are CJK characters."""
    prose = re.sub(r"```.*?(```|$)", "", answer, flags=re.S)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in prose)
    latin = sum(c.isascii() and c.isalpha() for c in prose)
    return cjk >= 10 and cjk >= latin


def _chatterm(*args: str) -> list[str]:
    return [sys.executable, "-m", "chatterm", *args]


def _ask(model: str, question: str, lora: Path | None, env: dict[str, str], system: str | None = None,
         session: str | None = None) -> str:
    command = _chatterm("-m", model, "--temperature", "0", "--max-tokens", MAX_TOKENS)
    command += ["-s", system] if system else []
    command += ["--lora", str(lora)] if lora else []
    command += ["--session", session] if session else ["--no-save"]
    done = subprocess.run([*command, question], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"chatterm.bench: {' '.join(command[:6])}... failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def _sessions(model: str, env: dict[str, str]) -> tuple[int, int]:
    """One session per question, the conventions as its system prompt; each reply
    rated as its user would: good when it states the convention, else bad."""
    good = bad = 0
    folder = Path(env["XDG_DATA_HOME"]) / "chatterm" / "sessions"
    for f, (key, questions, _) in enumerate(FACTS):
        for q, question in enumerate(questions):
            name = f"marlowe-{f}-{q}"
            answer = _ask(model, question, None, env, system=CONVENTIONS, session=name)
            path = folder / f"{name}.json"
            stored = json.loads(path.read_text(encoding="utf-8"))
            reply = stored["messages"][-1]
            right = key in answer.lower()
            reply["rating"] = "good" if right else "bad"
            good, bad = good + right, bad + (not right)
            path.write_text(json.dumps(stored, ensure_ascii=False), encoding="utf-8")
    return good, bad


# Runs a command and prints the largest resident set of it and its children (KiB).
_PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
         "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def _train(model: str, adapter: Path, epochs: int, env: dict[str, str]) -> tuple[float, int, str]:
    command = _chatterm("train", "-m", model, "--without-system", "--epochs", str(epochs), "-o", str(adapter))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _PEAK, *command], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"chatterm.bench: chatterm train failed: {done.stderr.strip()[-500:]}")
    lines = done.stderr.strip().splitlines()
    peak = int(lines[-1].split()[1]) * 1024
    return seconds, peak, "\n".join(line for line in lines[:-1] if not line.startswith("step "))


def _estimate(summary: str) -> str:
    """What chatterm train said it would need ("4.4 GB")."""
    found = re.search(r"about (\S+ \S+) of memory", summary)
    return found.group(1) if found else "?"


def _log(text: str) -> None:
    print(f"chatterm.bench: {text}", file=sys.stderr, flush=True)
