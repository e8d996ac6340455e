"""The answer's code and the checks as one program, and what its run says.

The program is what the approval shows and what runs: the question's imports, the
answer's code as it is, then one `_check(...)` line per example or user check. Each
check reports on a line of its own, behind a marker no code can guess, so the code's
own prints never pass for a result; a check is compared by value (floats within a
tolerance, containers element by element), a doctest by the text it prints (or by
value where the text is a literal), an assert by not failing.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatterm.checking.examples import Example
from chatterm.records import CheckResult
from chatterm.tools.runner import run_python

ASSERT = "assert"
TIMEOUT_S = 10.0  # the whole program: an answer that loops for ever fails here
MECHANICAL = ("SyntaxError", "IndentationError", "NameError", "ImportError", "ModuleNotFoundError",
              "RecursionError", "timeout")


@dataclass(frozen=True)
class Check:
    """One thing the program checks: an example from the question, or the user's."""

    kind: str  # examples.VALUE, OUTPUT, RAISES, or ASSERT (the user's own)
    source: str  # the expression run, or the assert statement
    expected: str = ""
    setup: tuple[str, ...] = ()
    shown: str = ""  # how a failure names it

    @classmethod
    def of(cls, example: Example) -> Check:
        return cls(example.kind, example.call, example.expected, example.setup, example.shown)

    @classmethod
    def user(cls, source: str) -> Check:
        """One of the user's checks (`checking.user.parse`): set-up lines, then an assert."""
        last = source.strip().splitlines()[-1] if source.strip() else source
        return cls(ASSERT, source, shown=last.removeprefix("assert").strip())


def functions(checks: list[Check]) -> list[str]:
    """The names the checks call, in order (to find the code that defines them)."""
    names: list[str] = []
    for check in checks:
        try:
            tree = ast.parse(check.source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in names:
                names.append(node.func.id)
    return names


_HARNESS = '''
# chatterm: the checks, run against the code above
import contextlib as _cl, io as _io, json as _json, math as _math, os as _os, traceback as _tb

_report = open(_os.dup(1), "w", encoding="utf-8")  # the process's own output, whatever the code did to sys.stdout

def _same(got, want):
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return _math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9) or got == want
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return type(got) is type(want) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    try:
        return bool(got == want)
    except Exception:
        return repr(got) == repr(want)

def _text(s):
    return "\\n".join(line.rstrip() for line in s.strip().splitlines())

def _check(n, kind, source, expected=""):
    out, said = _io.StringIO(), {"n": n, "ok": False}
    try:
        with _cl.redirect_stdout(out):
            if kind == "assert":
                exec(source, globals())
                said["ok"] = True
            else:
                got = eval(source, globals())
        if kind == "value":
            want = eval(expected, globals())
            said["ok"], said["got"] = _same(got, want), repr(got)
        elif kind == "output":
            shown = out.getvalue() + (repr(got) + "\\n" if got is not None else "")
            said["ok"], said["got"] = _text(shown) == _text(expected), _text(shown)
            if not said["ok"] and not out.getvalue():
                try:
                    said["ok"] = _same(got, eval(expected, globals()))
                except Exception:
                    pass
        elif kind == "raises":
            said["got"] = repr(got)
    except BaseException as e:
        said["error"] = type(e).__name__
        said["got"] = _tb.format_exception_only(type(e), e)[-1].strip()
        said["trace"] = "".join(_tb.format_exception(type(e), e, e.__traceback__)[-6:])
        if kind == "raises":
            said["ok"] = expected in [c.__name__ for c in type(e).__mro__]
        if isinstance(e, (KeyboardInterrupt, SystemExit)) and kind != "raises":
            said["got"] = type(e).__name__
    print(MARK + _json.dumps(said), file=_report, flush=True)

for _n, _kind, _source, _expected, _setup in CHECKS:
    for _line in _setup:
        try:
            exec(_line, globals())
        except Exception:
            pass
    _check(_n, _kind, _source, _expected)
'''


def program(code: str, checks: list[Check], imports: Sequence[str] = ()) -> tuple[str, str]:
    """(the program, its marker): the checks first (what the approval shows before it
    folds), then `imports` and `code` as they are, then what runs the checks."""
    marker = f"@chatterm-check-{secrets.token_hex(8)}@ "
    lines = ["# chatterm: the checks (number, kind, code, expected), run against the code below", "CHECKS = ["]
    for n, check in enumerate(checks, 1):
        lines.append(f"    ({n}, {check.kind!r}, {check.source!r}, {check.expected!r}, {list(check.setup)!r}),")
    lines += ["]", "", *imports, "", "# the reply's code: what it imports and defines", code.rstrip("\n"),
              _HARNESS.replace("MARK", repr(marker))]
    return "\n".join(lines) + "\n", marker


def read(output: str, marker: str, checks: list[Check], seconds: float, timed_out: bool = False,
         exit_code: int | None = 0) -> CheckResult:
    """What the run of `program` says: checks passed, and the first failure."""
    said: dict[int, dict] = {}
    for line in output.splitlines():
        if line.startswith(marker):
            try:
                report = json.loads(line[len(marker):])
                said[int(report["n"])] = report
            except (ValueError, KeyError, TypeError):
                continue
    passed = sum(1 for r in said.values() if r.get("ok") is True)
    result = CheckResult(passed, len(checks), seconds)
    if passed == len(checks):
        return result
    own = "\n".join(line for line in output.splitlines() if not line.startswith(marker))
    for n, check in enumerate(checks, 1):
        report = said.get(n)
        if report is None:
            if timed_out:
                result.failure, result.mechanical = f"timed out after {seconds:.0f} s at {check.shown}", "timeout"
            else:
                error = _last_error(own)
                result.failure = f"the code does not run: {error}" if error else \
                    f"the program stopped before {check.shown} (exit {exit_code})"
                result.mechanical = error.split(":")[0] if error.split(":")[0] in MECHANICAL else ""
            result.trace = own[-2000:]
            return result
        if report.get("ok") is True:
            continue
        got = _short(str(report.get("got", "")))
        error = str(report.get("error", ""))
        if check.kind == ASSERT:
            result.failure = f"{check.shown} failed" + (f": {got}" if error and error != "AssertionError" else "")
        elif check.kind == "raises":
            result.failure = f"{check.source} gave {got}, expected {check.expected}"
        elif error:
            result.failure = f"{check.source} raised {got}, expected {_short(check.expected)}"
        else:
            result.failure = f"{check.source} gave {got}, expected {_short(check.expected)}"
        result.mechanical = error if error in MECHANICAL else ""
        result.trace = str(report.get("trace", "")) or result.failure
        return result
    return result


def _last_error(output: str) -> str:
    """The exception line that ended a program (`NameError: name 'x' is not defined`)."""
    for line in reversed(output.strip().splitlines()):
        match = re.match(r"\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b:?(.*)", line)
        if match:
            return _short(match.group(1).split(".")[-1] + (":" + match.group(2) if match.group(2) else ""))
    return ""


def _short(text: str, most: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[:most - 1] + "…"


def execute(source: str, marker: str, checks: list[Check], cancelled: Callable[[], bool]) -> CheckResult:
    """Run `source` (from `program`) as the python tool runs code: a fresh interpreter
    under the reaper, timed; Ctrl-C stops it."""
    outcome = run_python(source, timeout_s=TIMEOUT_S, cancelled=cancelled)
    return read(outcome.output, marker, checks, outcome.seconds, outcome.timed_out or outcome.cancelled,
                outcome.exit_code)
