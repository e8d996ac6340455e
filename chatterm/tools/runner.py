"""Running a tool's program: under a reaper (`reaper.py`) in its own process group,
so everything it starts, daemons that left the group included, ends with the call and
is named; Ctrl-C in the chat never reaches it by itself; a time limit; the program's
own exit status, waited for (not its output's end); output capped (the head and the
tail kept, the middle said)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OUTPUT_CAP = 32 << 10  # bytes of output the model reads back (half from the start, half from the end)
POLL_S = 0.05
GRACE_S = 1.0  # SIGTERM, then SIGKILL this much later


@dataclass
class Outcome:
    exit_code: int | None  # None: killed (timeout or Ctrl-C)
    output: str
    lines: int
    seconds: float
    timed_out: bool = False
    cancelled: bool = False
    ended: list[str] = field(default_factory=list)  # "PID COMMAND" of processes it left, ended
    more_ended: int = 0  # ended beyond those listed

    @property
    def summary(self) -> str:
        lines = f"{self.lines} line{'s' if self.lines != 1 else ''}"
        left = len(self.ended) + self.more_ended
        ended = f" · ended {left} process{'es' if left != 1 else ''} it left running" if left else ""
        if self.cancelled:
            return f"stopped (Ctrl-C) · {lines}{ended}"
        if self.timed_out:
            return f"killed after {self.seconds:.0f} s · {lines}{ended}"
        return f"exit {self.exit_code} · {lines}{ended}"

    def ended_note(self) -> str:
        if not self.ended:
            return ""
        more = f" and {self.more_ended} more" if self.more_ended else ""
        return (f"\n[ended when the call ended: {len(self.ended) + self.more_ended} process(es) it left running: "
                f"{'; '.join(self.ended)}{more}]")

    def for_model(self) -> str:
        if self.cancelled:
            head = "[stopped by the user]"
        elif self.timed_out:
            head = f"[killed: still running after {self.seconds:.0f} s]"
        else:
            head = f"[exit code {self.exit_code}]"
        if self.output:
            return f"{head}\n{self.output}{self.ended_note()}"
        quiet = "(it printed nothing: to see what the code does, call it and print the results)"
        return (f"{head}\n{quiet}" if self.exit_code == 0 and not self.cancelled else head) + self.ended_note()


REAPER = str(Path(__file__).with_name("reaper.py"))


def reaped(argv: Sequence[str], report_fd: int | None = None, limits: dict[str, int] | None = None) -> list[str]:
    """`argv` run under the reaper (its report to `report_fd`, if any; `limits`: what
    a tool call may use, `tools.limits`)."""
    from chatterm.tools import limits as tool_limits

    options = tool_limits.argv(limits) if limits else []
    return [sys.executable, "-I", "-S", REAPER, "-" if report_fd is None else str(report_fd), *options, "--", *argv]


def run_process(argv: Sequence[str], *, cwd: str | None = None, timeout_s: float = 60.0,
                cancelled: Callable[[], bool] = lambda: False, cap: int = OUTPUT_CAP) -> Outcome:
    from chatterm.tools.limits import limits

    start = time.monotonic()
    call_limits = limits()  # the user's limits checked before a pipe is opened
    report_r, report_w = os.pipe()
    try:
        proc = subprocess.Popen(reaped(argv, report_w, call_limits), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(report_w,))
    except BaseException:
        os.close(report_r)
        raise
    finally:
        os.close(report_w)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    head, tail, total, newlines = bytearray(), bytearray(), 0, 0
    timed_out = stopped = False
    try:
        while True:
            if cancelled():
                stopped = True
                break
            if time.monotonic() - start > timeout_s:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if not ready:
                if proc.poll() is not None:
                    break  # it exited; what its children still hold open is not waited for
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                # Its output closed a moment before it exits: wait for that exit (ending
                # the group now would kill it in between, and report -15).
                if proc.poll() is None:
                    try:
                        proc.wait(timeout=POLL_S)
                    except subprocess.TimeoutExpired:
                        continue  # it lives on without output: the checks above go on
                break
            total += len(chunk)
            newlines += chunk.count(b"\n")
            if len(head) < cap // 2:
                take = cap // 2 - len(head)
                head += chunk[:take]
                chunk = chunk[take:]
            if chunk:
                tail += chunk
                del tail[:max(0, len(tail) - cap // 2)]
    finally:
        _end_group(proc)
        proc.stdout.close()
        report = _report(report_r)
    seconds = time.monotonic() - start
    left_out = total - len(head) - len(tail)
    text = head.decode("utf-8", "replace")
    if left_out > 0:
        text += f"\n[... {left_out:,} bytes left out ...]\n"
    text += tail.decode("utf-8", "replace")
    lines = newlines + (1 if text and not text.endswith("\n") else 0)
    code = None if (timed_out or stopped) else report.get("exit", proc.returncode)
    return Outcome(code, text, lines, seconds, timed_out=timed_out, cancelled=stopped,
                   ended=[str(e) for e in report.get("ended", [])], more_ended=int(report.get("more", 0)))


def run_python(code: str, *, timeout_s: float, cancelled: Callable[[], bool] = lambda: False) -> Outcome:
    """`code` as a program of its own in a fresh interpreter (the python tool's run, and
    the checks of a code answer), under the reaper, timed."""
    fd, name = tempfile.mkstemp(prefix="chatterm-snippet-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(code)
        return run_process([sys.executable, name], timeout_s=timeout_s, cancelled=cancelled)
    finally:
        os.unlink(name)


def _report(fd: int) -> dict:
    """The reaper's report (empty when it wrote none: killed before it could)."""
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except OSError:
        data = b""
    finally:
        os.close(fd)
    try:
        report = json.loads(data) if data else {}
    except ValueError:
        report = {}
    return report if isinstance(report, dict) else {}


def _end_group(proc: subprocess.Popen) -> None:
    """The process and everything it started: asked to stop, then killed. Its group is
    the one its pid leads (start_new_session), never looked up: just after Popen returns
    the child may not have left chatterm's group yet (posix_spawn's setsid comes later),
    and a lookup would name chatterm's own group. The process itself is signalled by pid."""
    try:  # a reaper its program stopped (kill -STOP $PPID) resumes to end the rest
        os.killpg(proc.pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        for send in (lambda s=sig: os.killpg(proc.pid, s), lambda s=sig: proc.send_signal(s)):
            try:
                send()
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
        except (ProcessLookupError, PermissionError):
            pass
        return
