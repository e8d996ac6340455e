"""A code answer checked by chatterm, not by the model (docs/verified-code.md).

After a reply, the examples of the question (and the user's own checks) run against
the reply's code, with the approval any run needs. If they pass, or none can be taken,
the reply stands: no second model call. If they fail, fresh samples of the same
question are checked (and, for a failure code alone causes, one repair turn with the
traceback): the first candidate that passes all becomes the reply shown, else the one
that passes the most, if it passes more than the first; else the first stays. Every
candidate is kept as a version of the reply (`/alt`), with its result.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chatterm import branches
from chatterm.checking import examples
from chatterm.checking.code import compiles, defines, defining, definitions
from chatterm.checking.program import ASSERT, Check, execute, functions, program
from chatterm.conversation.reply import Finish, Reply
from chatterm.conversation.turn import Turn
from chatterm.errors import ChattermError
from chatterm.records import YES, Checked, CheckResult, Event, Notice, ToolCall
from chatterm.settings import Decoding

if TYPE_CHECKING:
    from chatterm.conversation.backend import Backend
    from chatterm.settings import Sampling
    from chatterm.tools.toolbox import Toolbox


class Conversation(Protocol):
    """What checking uses of a conversation (`core.Conversation`)."""

    checking: Checking | None
    toolbox: Toolbox | None
    backend: Backend
    last: Reply | None

    @property
    def messages(self) -> list[dict]: ...
    @property
    def sampling(self) -> Sampling: ...
    def changed(self) -> None: ...
    def reply_message(self, reply: Reply) -> dict: ...
    def prompt_for(self, messages: list[dict]) -> Any: ...
    def measure_again(self) -> None: ...


SAMPLE_TEMPERATURE = 0.7  # fresh samples differ from the greedy first answer, and stay on topic
SAMPLE_TOKENS = 384  # a candidate's tokens at least (else twice the first answer's)
REPAIR = ("Running your code on the examples from my question failed:\n```\n{trace}\n```\n"
          "Fix it. Answer with the whole corrected code, its imports included, in one ```python code block.")


@dataclass
class Checking:
    """Checking is on in a conversation (the python tool allowed, or --check): the
    user's own checks (`/check EXPR`, `--check FILE`) go with the question's examples."""

    user: list[str] = field(default_factory=list)
    approved: bool = False  # --yes python: the checks run without asking


@dataclass
class _Task:
    """One reply being checked: its question, where its versions hang, the checks."""

    conversation: Conversation
    turn: Turn
    question: int  # the index of the question
    checks: list[Check]
    imports: list[str]
    defined: list[str]  # the functions the checks call that the code defines
    answer: str  # the reply's text as the model gave it

    @property
    def fork(self) -> int:
        """Where the reply's versions hang: fresh answers replace the whole turn."""
        return self.question + 1


def checks_of(question: str, checking: Checking) -> tuple[list[Check], list[str]]:
    """(the checks, the question's imports)."""
    found = [Check.of(e) for e in examples.extract(question)] + [Check.user(c) for c in checking.user]
    return found, examples.imports(question)


def verified(conversation: Conversation, turn: Turn, question: int) -> Generator[Event, None, None]:
    """The checks of the reply to `messages[question]`, and the candidates that replace
    a failing one."""
    assert conversation.checking is not None
    messages = conversation.messages
    checks, imports = checks_of(messages[question]["content"], conversation.checking)
    names = functions(checks)
    answer = messages[-1]["content"]
    shown = defining(answer, names)  # the code the reply shows
    ran = _ran(messages[question + 1:], names)  # the code the model ran, as the tool got it
    code = shown or ran
    if not checks or code is None:
        return  # nothing to check: the reply stands
    defined = [n for n in names if defines(code, [n])]
    checks = [c for c in checks if c.kind == ASSERT or set(functions([c])) & set(defined)]
    if not checks:
        return
    task = _Task(conversation, turn, question, checks, imports, defined, answer)
    if shown is not None:
        first = yield from _check(task, shown)
        if first is None:
            return
    else:  # it ran code but answered without it: the code that ran is a candidate to show
        first = CheckResult(0, len(checks), 0.0, f"the reply shows no code defining {', '.join(defined)}")
    messages[-1]["check"] = first.stored()
    conversation.changed()
    yield Checked(first, "the reply")
    if not first.ok and not turn.cancelled():
        yield from _candidates(task, first, ran if ran != shown else None)
        conversation.measure_again()  # the reply shown may be another one


def _candidates(task: _Task, first: CheckResult, ran: str | None) -> Generator[Event, None, None]:
    """Other answers tried in turn until one passes every check: the code the model ran
    (when its reply did not show it), a repair turn (for a failure code alone causes),
    fresh samples. Each is kept as a version; the best is the one shown."""
    conversation, turn = task.conversation, task.turn
    messages = conversation.messages
    tries = int(conversation.sampling.verify)
    first_tokens = conversation.last.n_tokens if conversation.last is not None else 0
    best, best_passed = branches.current_version(messages[task.fork]), first.passed
    tried: list[tuple[str, str, int]] = [("ran", "the code the model ran", 0)] if ran is not None else []
    if first.mechanical and tries:
        tried.append(("repair", "a repair", 0))
    tried += [("sample", f"a fresh sample ({k} of {tries})", k) for k in range(1, tries + 1)]
    for kind, label, number in tried:
        if turn.cancelled():
            break
        reply = None
        if kind == "ran":
            text = _with_code(task.answer, ran or "")
        else:
            yield Notice(f"trying {label} · Ctrl-C keeps the best so far")
            reply = _generate(task, first, kind, number, first_tokens)
            if reply is None:
                break
            sent = _sent(reply, task.defined)  # the code it wrote as a call, if it did
            text = _with_code(reply.text, sent) if sent and defining(reply.text, task.defined) is None else reply.text
        code = defining(text, task.defined)
        if code is None:
            result: CheckResult | None = CheckResult(0, len(task.checks), 0.0,
                                                     "no code defining " + ", ".join(task.defined))
        else:
            result = yield from _check(task, code)
        if result is None:
            break
        message = conversation.reply_message(reply) if reply is not None else \
            {"role": "assistant", "content": text, "finish": Finish.EOG.value}
        message.update(content=text, check=result.stored(), candidate=kind)
        message.pop("tool_calls", None)  # a sample's call never ran: its code is in the text now
        branches.add_version(messages, task.fork, message)
        better = result.passed > best_passed
        if better:
            best, best_passed = branches.current_version(messages[task.fork]), result.passed
        _choose(conversation, task.fork, best)
        yield Checked(result, label, shown=text if better else None)
        if result.ok:
            break


def _with_code(text: str, code: str) -> str:
    return f"{text.rstrip()}\n\n```python\n{code.rstrip()}\n```".lstrip()


def _choose(conversation: Conversation, fork: int, number: int) -> None:
    messages = conversation.messages
    branches.choose(messages, fork, branches.versions(messages, fork), number)
    conversation.changed()


def _ran(chain: list[dict], names: list[str]) -> str | None:
    """The last program the model ran this turn that defines one of `names` (the
    python tool's argument, as the tool received it: never retyped)."""
    if not names:
        return None
    for message in reversed(chain):
        for call in reversed(message.get("tool_calls") or []):
            function = call.get("function") or {}
            arguments = function.get("arguments")
            code = arguments.get("code") if isinstance(arguments, dict) else None
            if function.get("name") == "python" and isinstance(code, str) and defines(code, names):
                return code
    return None


def _sent(reply: Reply, names: list[str]) -> str | None:
    """The code a reply's python call carries, when it defines one of `names`."""
    for call in reversed(reply.calls):
        code = call.arguments.get("code") if call.name == "python" and call.arguments else None
        if isinstance(code, str) and defines(code, names):
            return code
    return None


def _check(task: _Task, code: str) -> Generator[Event, None, CheckResult | None]:
    """Run the checks on `code`, once approved (None: declined or stopped)."""
    source, marker = program(definitions(code), task.checks, task.imports)
    many = f"{len(task.checks)} check{'s' if len(task.checks) != 1 else ''}"
    call = ToolCall("python", {"code": source}, purpose=f"chatterm asks to run the reply's code on {many} (python)")
    checking, toolbox = task.conversation.checking, task.conversation.toolbox
    if checking is not None and checking.approved:
        call.approve(said_by="--yes python")
    elif toolbox is not None and toolbox.runs_unasked("python"):
        call.approve(said_by="always (this session)" if "python" in toolbox.always else "--yes python")
    yield call  # the consumer approves or declines it
    if call.decision != YES:
        yield Notice("the examples did not run: the check was declined")
        return None
    if task.turn.cancelled():
        return None
    run = call.arguments["code"] if call.arguments else source  # as the user approved it (perhaps edited)
    try:
        return execute(run, marker, task.checks, task.turn.cancelled)
    except (ChattermError, OSError) as e:  # the user's tools.toml, a machine out of processes
        yield Notice(f"the examples did not run: {getattr(e, 'strerror', None) or e}")
        return None


def _generate(task: _Task, first: CheckResult, kind: str, number: int, first_tokens: int) -> Reply | None:
    """A fresh sample of the question (`number`: which), or a repair of the reply with
    the failure's traceback; None when it was stopped or failed."""
    conversation, turn = task.conversation, task.turn
    # A sample far longer than the first answer rambles: it is cut, and costs no more.
    most = max(SAMPLE_TOKENS, 2 * first_tokens)
    sampling = Decoding.of(conversation.sampling).updated(
        temperature=SAMPLE_TEMPERATURE, max_tokens=min(conversation.sampling.max_tokens, most))
    seed = conversation.sampling.seed
    if seed is not None and number:
        sampling = sampling.updated(seed=(seed + 7919 * number) % 2**31)
    # The question as the first reply had it: the same prompt, so the engine reuses its cache.
    asked = conversation.messages[:task.question + 1]
    if kind == "repair":
        feedback = REPAIR.format(trace=(first.trace or first.failure).strip()[-1500:])
        asked = [*asked, {"role": "assistant", "content": task.answer}, {"role": "user", "content": feedback}]
    try:
        prompt = conversation.prompt_for(asked)
    except ChattermError:
        return None
    backend = conversation.backend
    # A candidate is done once its code is: the prose after the block costs time and
    # changes nothing the checks see.
    done = _CodeWatch(task.defined)
    try:
        reply = backend.reply(prompt, sampling, lambda: turn.cancelled() or done.seen)
        toolbox = conversation.toolbox
        if toolbox:  # a sample that calls python with its code: that code is checked, never retyped
            from chatterm.tools.markup import CallParser

            reply.parse_calls(CallParser(backend.tool_family, toolbox.tools))
        for piece in reply:
            done.feed(piece)
    except ChattermError:  # a candidate that cannot be made (the engine failed) leaves the reply as it is
        return None
    if turn.cancelled():
        return None
    if done.seen and reply.finish == Finish.CANCELLED:
        reply.finish = Finish.STOP
    if reply.finish not in (Finish.EOG, Finish.STOP, Finish.LENGTH):
        return None
    return reply


class _CodeWatch:
    """Whether a streaming reply has closed a code block that defines one of `names`
    (looked for only when a piece holds a backtick: fences are few)."""

    def __init__(self, names: list[str]):
        self.names, self.text, self.seen = names, "", False

    def feed(self, piece: str) -> None:
        if self.seen or not isinstance(piece, str):
            return
        self.text += piece
        if "`" in piece:
            code = defining(self.text, self.names)
            self.seen = code is not None and compiles(code)  # a block cut inside a docstring goes on
