"""Runs one program and ends everything it starts: the parent of every tool call and
MCP server process (`python reaper.py REPORT_FD -- PROGRAM ARGS...`).

It makes itself a child subreaper (Linux's PR_SET_CHILD_SUBREAPER), so a process the
program leaves behind, even one that left the process group with `setsid` or
double-forked to become a daemon, is re-parented to it rather than to init. When the
program exits, or the reaper is told to stop (SIGTERM, SIGHUP, SIGINT), every process
descended from it is stopped (SIGSTOP, so none can fork away meanwhile) and then killed,
and the reaper writes a JSON report to REPORT_FD ("-": none):
`{"exit": CODE, "ended": ["PID COMMAND", ...]}`, CODE negative for a signal, as
subprocess has it. Its own stdin, stdout and stderr are given up to the program: an
output pipe closes when the program's tree is done with it, not when the reaper is.

Run with `python -I -S` and nothing but the standard library: it starts in a few
milliseconds, whatever environment the chat runs in. Without a subreaper (not Linux)
it still ends the descendants it can find, as the process-group kill does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
SETTLE_S = 2.0  # the most a sweep waits for what it killed to be gone
LISTED = 8  # processes named in a report


class Stop(Exception):
    """A signal told the reaper to end the program's tree now."""


def _on_signal(signum: int, frame: object) -> None:
    raise Stop


def _become_subreaper() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc (empty where there is none)."""
    parents = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command (field 2) may hold spaces and parentheses: fields resume after the last ")".
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            parents[int(name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[int]:
    """The processes below `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read(400).split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    return text[:80] or "?"


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap() -> None:
    """Collect every child that has exited (orphans re-parented here included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep(root: int) -> list[str]:
    """Every process below `root` stopped, then killed, until none is left (or
    SETTLE_S passed); "PID COMMAND" of each one found."""
    ended: dict[int, str] = {}
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        # Stop first: a stopped process forks no more, so the tree stops growing.
        seen: set[int] = set()
        while True:
            found = [p for p in descendants(root) if p not in seen]
            if not found:
                break
            for pid in found:
                ended.setdefault(pid, _command(pid))
            _signal_all(found, signal.SIGSTOP)
            seen.update(found)
        if not seen:
            break
        _signal_all(sorted(seen), signal.SIGKILL)
        _signal_all(sorted(seen), signal.SIGCONT)
        time.sleep(0.01)
        _reap()
    return [f"{pid} {command}" for pid, command in ended.items()]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: reaper.py REPORT_FD|- -- PROGRAM [ARGS...]\n")
        return 2
    report_fd = None if argv[0] == "-" else int(argv[0])
    program = argv[2:]
    _become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    me = os.getpid()
    code: int | None = None
    child = 0
    try:
        child = os.fork()
        if child == 0:
            try:
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                if report_fd is not None:
                    os.close(report_fd)
                os.execvp(program[0], program)
            except OSError as e:
                os.write(2, f"{program[0]}: {e.strerror or e}\n".encode("utf-8", "replace"))
            os._exit(127)
        # The pipes are the program's: a reader sees their end when the program's tree is done.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        while code is None:
            pid, status = os.waitpid(-1, 0)  # orphans re-parented here are reaped on the way
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
    except Stop:
        pass
    except ChildProcessError:
        pass
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # the sweep finishes whatever else is sent
    ended = [line for line in sweep(me) if not line.startswith(f"{child} ")]  # the program itself is not news
    if code is None:
        code = -signal.SIGKILL
    if report_fd is not None:
        report = json.dumps({"exit": code, "ended": ended[:LISTED], "more": max(0, len(ended) - LISTED)})
        try:
            os.write(report_fd, report.encode("utf-8", "replace"))
        except OSError:
            pass
    return 0 if code is None else (code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
