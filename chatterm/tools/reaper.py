"""Runs one program and ends everything it starts: the parent of every tool call and
MCP server process (`python reaper.py REPORT_FD [--limit=KEY=N ...] -- PROGRAM ARGS...`).

Where the kernel allows it (unprivileged user namespaces, or root), the program runs
in a PID namespace of its own, whose first process (`_init`, PID 1 there) is its
parent: the program cannot signal it (the kernel ignores SIGKILL and SIGSTOP sent to a
namespace's init from inside) nor see the reaper; when the program exits, init writes
the report and exits, and the kernel kills every process left in the namespace, daemons
that left the session included; init dies with the reaper (PR_SET_PDEATHSIG), and the
namespace with it. `--limit`s (processes, memory, cpu, file: `tools.limits`) become
resource limits of the program, and a pids cgroup of its own where one can be made, so
a fork bomb stops at its limit and leaves the chat room to run.

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
import resource
import signal
import sys
import time
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
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


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _pid_namespace() -> bool:
    """Whether the reaper's next child starts a PID namespace of its own (as root, or
    in a user namespace that maps the user to itself)."""
    try:
        libc = _libc()
        uid, gid = os.getuid(), os.getgid()
        if uid == 0 and libc.unshare(CLONE_NEWPID) == 0:
            return True
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
            return False
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        return True
    except (OSError, AttributeError):
        return False


def _pids_cgroup(processes: int) -> str | None:
    """A pids cgroup (v1 or v2) below the reaper's own, limited to `processes`, where
    this user may make one (None: none)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, place = line.split(":", 2)
        if controllers == "pids":
            parent = "/sys/fs/cgroup/pids" + place.rstrip("/")
        elif controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            parent = "/sys/fs/cgroup" + place.rstrip("/")
        else:
            continue
        folder = f"{parent}/chatterm-tool-{os.getpid()}"
        try:
            os.mkdir(folder)
        except OSError:
            continue
        try:
            with open(f"{folder}/pids.max", "w") as f:
                f.write(str(processes))
            return folder
        except OSError:
            _remove_cgroup(folder)
    return None


def _remove_cgroup(folder: str | None) -> None:
    if folder is None:
        return
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            os.rmdir(folder)
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)


def _limit(limits: dict[str, int], cgroup: str | None, in_namespace: bool) -> None:
    """The limits applied to this process (the program, before it is exec'd)."""
    if cgroup is not None:
        try:
            with open(f"{cgroup}/cgroup.procs", "w") as f:
                f.write("0")
        except OSError:
            pass
    for key, kind in (("memory", resource.RLIMIT_AS), ("cpu", resource.RLIMIT_CPU),
                      ("file", resource.RLIMIT_FSIZE), ("processes", resource.RLIMIT_NPROC)):
        value = limits.get(key)
        if value is None:
            continue
        if key == "processes" and not in_namespace:
            value += _tasks_of(os.getuid())  # the count is the user's, across the machine
        try:
            _, hard = resource.getrlimit(kind)
            resource.setrlimit(kind, (value if hard == resource.RLIM_INFINITY else min(value, hard), hard))
        except (ValueError, OSError):
            pass


def _tasks_of(uid: int) -> int:
    """The processes and threads `uid` has now (what RLIMIT_NPROC counts)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def _exec(program: list[str], report_fd: int | None) -> None:
    """This process becomes the program (never returns)."""
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if report_fd is not None:
            os.close(report_fd)
        os.execvp(program[0], program)
    except OSError as e:
        os.write(2, f"{program[0]}: {e.strerror or e}\n".encode("utf-8", "replace"))
    os._exit(127)


def _write_report(report_fd: int | None, code: int, ended: list[str]) -> None:
    if report_fd is None:
        return
    report = json.dumps({"exit": code, "ended": ended[:LISTED], "more": max(0, len(ended) - LISTED)})
    try:
        os.write(report_fd, report.encode("utf-8", "replace"))
    except OSError:
        pass


def _ns_pid(host_pid: int) -> int | None:
    """A process's pid in the innermost PID namespace it is in."""
    try:
        with open(f"/proc/{host_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def _init(program: list[str], report_fd: int | None, limits: dict[str, int], cgroup: str | None) -> None:
    """PID 1 of the program's namespace: its parent, which reaps what is re-parented
    here, reports what the program left running, and exits (never returns), upon which
    the kernel ends every process in the namespace."""
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    me = int(os.readlink("/proc/self"))  # /proc is the machine's: pids there are its pids
    code: int | None = None
    child = 0
    try:
        child = os.fork()
        if child == 0:
            _limit(limits, cgroup, in_namespace=True)
            _exec(program, report_fd)
        while code is None:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
    except (Stop, ChildProcessError):
        pass
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    # Named by the pids the program saw (its namespace's), as `$!` gave them.
    ended = [f"{_ns_pid(pid) or pid} {_command(pid)}" for pid in descendants(me) if _ns_pid(pid) != child]
    _write_report(report_fd, -signal.SIGKILL if code is None else code, ended)
    os._exit(0)


def main(argv: list[str]) -> int:
    limits: dict[str, int] = {}
    if len(argv) >= 1:
        while len(argv) > 1 and argv[1].startswith("--limit="):
            key, _, value = argv.pop(1)[len("--limit="):].partition("=")
            limits[key] = int(value)
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: reaper.py REPORT_FD|- [--limit=KEY=N ...] -- PROGRAM [ARGS...]\n")
        return 2
    report_fd = None if argv[0] == "-" else int(argv[0])
    program = argv[2:]
    cgroup = _pids_cgroup(limits["processes"]) if "processes" in limits else None
    in_namespace = bool(limits) and _pid_namespace()  # a call's program; an MCP server keeps the machine's view
    _become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    me = os.getpid()
    code: int | None = None
    child = 0
    try:
        child = os.fork()
        if child == 0:
            if in_namespace:
                _init(program, report_fd, limits, cgroup)
            _limit(limits, cgroup, in_namespace=False)
            _exec(program, report_fd)
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
        if in_namespace and child:  # init reports and ends the namespace
            code = _ended_in_time(child)
    except ChildProcessError:
        pass
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # the sweep finishes whatever else is sent
    ended = [line for line in sweep(me) if not line.startswith(f"{child} ")]  # the program itself is not news
    _remove_cgroup(cgroup)
    if in_namespace and code == 0:
        return 0  # init wrote the report
    if code is None:
        code = -signal.SIGKILL
    _write_report(report_fd, code, ended)
    return code if code >= 0 else 128 - code


def _ended_in_time(child: int) -> int | None:
    """The exit status of `child` (told to stop), if it ends within SETTLE_S."""
    try:
        os.kill(child, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == child:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
