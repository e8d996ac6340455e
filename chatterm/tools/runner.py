"""Running a tool's program: its own process group (Ctrl-C in the chat kills it
whole, children included, and never reaches it by itself), a time limit, and output
capped (the head and the tail kept, the middle said)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Sequence

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

    @property
    def summary(self) -> str:
        lines = f"{self.lines} line{'s' if self.lines != 1 else ''}"
        if self.cancelled:
            return f"stopped (Ctrl-C) · {lines}"
        if self.timed_out:
            return f"killed after {self.seconds:.0f} s · {lines}"
        return f"exit {self.exit_code} · {lines}"

    def for_model(self) -> str:
        if self.cancelled:
            head = "[stopped by the user]"
        elif self.timed_out:
            head = f"[killed: still running after {self.seconds:.0f} s]"
        else:
            head = f"[exit code {self.exit_code}]"
        if self.output:
            return f"{head}\n{self.output}"
        quiet = "(it printed nothing: to see what the code does, call it and print the results)"
        return f"{head}\n{quiet}" if self.exit_code == 0 and not self.cancelled else head


def run_process(argv: Sequence[str], *, cwd: str | None = None, timeout_s: float = 60.0,
                cancelled: Callable[[], bool] = lambda: False, cap: int = OUTPUT_CAP) -> Outcome:
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
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
    seconds = time.monotonic() - start
    left_out = total - len(head) - len(tail)
    text = head.decode("utf-8", "replace")
    if left_out > 0:
        text += f"\n[... {left_out:,} bytes left out ...]\n"
    text += tail.decode("utf-8", "replace")
    lines = newlines + (1 if text and not text.endswith("\n") else 0)
    code = None if (timed_out or stopped) else proc.returncode
    return Outcome(code, text, lines, seconds, timed_out=timed_out, cancelled=stopped)


def _end_group(proc: subprocess.Popen) -> None:
    """The process and everything it started: asked to stop, then killed. Its group is
    the one its pid leads (start_new_session), never looked up: just after Popen returns
    the child may not have left chatterm's group yet (posix_spawn's setsid comes later),
    and a lookup would name chatterm's own group. The process itself is signalled by pid."""
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        for send in (lambda: os.killpg(proc.pid, sig), lambda: proc.send_signal(sig)):
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
