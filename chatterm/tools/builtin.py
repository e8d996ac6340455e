"""chatterm's own tools, each off until enabled (`--tools`, `/tools`): run a shell
command, run a Python snippet, read, list and write files in the current folder's
tree or anywhere the user allows. Each has a JSON Schema and a one-line description
the model sees; every call is shown and approved before it runs (`toolbox`)."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatterm import safe_files
from chatterm.tools.intent import example_prints
from chatterm.tools.runner import run_process, run_python

READ_CAP = 256 << 10  # bytes of a file read_file gives the model
LIST_CAP = 500  # entries list_files gives
DEFAULT_TIMEOUT_S = 60


@dataclass
class Done:
    """What a tool gave: the text for the model, a line for the transcript."""

    text: str
    summary: str
    ok: bool = True


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], Callable[[], bool]], Done]
    preview: Callable[[dict[str, Any]], str] | None = None  # what the approval shows besides the arguments
    headline: str = ""  # the argument the collapsed transcript line shows

    def schema(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _run(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
    shell = shutil.which("bash") or "/bin/sh"
    timeout = arguments.get("timeout") or DEFAULT_TIMEOUT_S
    outcome = run_process([shell, "-c", arguments["command"]], timeout_s=float(timeout), cancelled=cancelled)
    return Done(outcome.for_model(), outcome.summary, ok=outcome.exit_code == 0)


def _python(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
    timeout = arguments.get("timeout") or DEFAULT_TIMEOUT_S
    outcome = run_python(arguments["code"], timeout_s=float(timeout), cancelled=cancelled)
    text = outcome.for_model()
    if outcome.exit_code and "NameError: name '" in outcome.output:
        # Small models take the tool for a notebook and leave out what an earlier reply defined.
        text += FRESH_NOTE
    defined = re.findall(r"^def (\w+)", arguments["code"], re.M)
    if outcome.exit_code == 0 and not outcome.output and defined:
        # ... and run a definition alone, then take the silence for success.
        prints = "\n".join(example_prints(arguments["code"])) or "print(...) lines that call it on examples"
        text = (f"[exit code 0]\n(it printed nothing: the program defines {', '.join(defined[:3])} but never "
                f"prints a result; run it again with, at its end, outside any function:\n{prints})")
    return Done(text, outcome.summary, ok=outcome.exit_code == 0)


FRESH_NOTE = ("\n(each run is a fresh interpreter: nothing from earlier runs or replies is defined, "
              "so send the whole program, its definitions and imports included)")


def _read_file(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
    """Lines start_line to end_line (all) of a text file, at most READ_CAP bytes: only
    what is returned is kept, and the reading stops there (a file of gigabytes costs
    what it gives)."""
    path = Path(arguments["path"]).expanduser()
    first = max(1, int(arguments.get("start_line") or 1))
    last = int(arguments.get("end_line") or 0) or None
    try:
        fd, size = safe_files.open_regular(path)
    except (OSError, safe_files.RefusedFile) as e:
        return Done(f"error: {getattr(e, 'strerror', None) or e}", "not read", ok=False)
    kept, line, whole, cut, partial = bytearray(), 1, False, False, False
    try:
        head = os.pread(fd, 8192, 0)
        if b"\0" in head:
            return Done(f"error: {path} is a binary file", "binary: not read", ok=False)
        while not cancelled():
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                whole = True
                break
            for piece in chunk.splitlines(keepends=True):
                if line >= first and (last is None or line <= last):
                    kept += piece
                    if len(kept) > READ_CAP:
                        cut = True
                        break
                partial = not piece.endswith((b"\n", b"\r"))
                line += not partial
                if last is not None and line > last:
                    break
            if cut or (last is not None and line > last):
                break
    except OSError as e:
        return Done(f"error: {path}: {e.strerror or e}", "not read", ok=False)
    finally:
        os.close(fd)
    if cancelled():
        return Done("[stopped by the user]", "stopped (Ctrl-C)", ok=False)
    text = bytes(kept[:READ_CAP]).decode("utf-8", "ignore" if cut else "replace")
    shown = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    end = first + shown - 1
    if cut:
        text += f"\n[... cut at {READ_CAP >> 10} KiB (line {end}): ask for start_line/end_line ...]"
    total = line - 1 + partial
    summary = (f"{shown} of {total} lines" if whole else
               f"lines {first}-{end} of a {size:,}-byte file" if shown else f"no lines from {first} on")
    return Done(text, summary)


def _list_files(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
    path = Path(arguments.get("path") or ".").expanduser()
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        return Done(f"error: {path}: {e.strerror or e}", "not listed", ok=False)
    names = [e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries[:LIST_CAP]]
    more = f"\n[... {len(entries) - LIST_CAP} more]" if len(entries) > LIST_CAP else ""
    return Done("\n".join(names) + more, f"{len(entries)} entries")


def _write_file(arguments: dict[str, Any], cancelled: Callable[[], bool]) -> Done:
    path = Path(arguments["path"]).expanduser()
    target = written_path(path)  # through links: the file the preview named
    content = arguments["content"]
    if target.is_dir():
        return Done(f"error: cannot write {path}: it is a folder", "not written", ok=False)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(content)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
        tmp = None
    except (OSError, UnicodeError) as e:
        return Done(f"error: cannot write {path}: {getattr(e, 'strerror', None) or e}", "not written", ok=False)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    where = f" (through a link: {target})" if target != Path(os.path.abspath(path)) else ""
    return Done(f"wrote {path}{where} ({lines} lines)", f"wrote {lines} lines")


def written_path(path: Path) -> Path:
    """The file a write to `path` changes: every link on the way followed (a link is
    written through, never replaced by a file)."""
    return Path(os.path.realpath(path))


def write_preview(arguments: dict[str, Any]) -> str:
    """The change write_file would make, as a unified diff (a new file: its size),
    headed by the real path it writes when a link leads there, and a warning when
    that is outside the working folder."""
    path = Path(str(arguments.get("path", ""))).expanduser()
    target = written_path(path)
    new = str(arguments.get("content", ""))
    head = ""
    linked = target != Path(os.path.abspath(path))
    if linked:
        head += f"writes {target} (the path leads there through a link)\n"
    here = Path(os.path.realpath(os.getcwd()))
    if target != here and here not in target.parents:
        head += f"outside the working folder {here}\n"
    name = target if linked else path
    if target.is_dir():
        return head + f"{name} is a folder: nothing will be written"
    try:
        old = safe_files.read_bytes(target, 16 << 20, what="file").decode("utf-8", "replace")
    except FileNotFoundError:
        return head + f"new file {name}, {len(new.splitlines())} lines"
    except (OSError, safe_files.RefusedFile) as e:
        return head + f"{name}: {getattr(e, 'strerror', None) or e}"
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                f"{name} (now)", f"{name} (after)")
    return head + ("".join(diff) or f"{name}: no change")


TIMEOUT = {"type": "integer", "description": f"seconds before it is killed (default {DEFAULT_TIMEOUT_S})",
           "minimum": 1, "maximum": 3600}
BUILTIN: dict[str, Tool] = {t.name: t for t in (
    Tool("run", "Run a shell command in the current folder; returns its exit code and output.",
         _object({"command": {"type": "string", "description": "the command line"}, "timeout": TIMEOUT},
                 ["command"]), _run, headline="command"),
    Tool("python", "Run a Python program in a fresh interpreter; returns its exit code and output "
                   "(a traceback when it fails).",
         _object({"code": {"type": "string", "description": "the program"}, "timeout": TIMEOUT}, ["code"]),
         _python, headline="code"),
    Tool("read_file", "Read a text file (optionally only lines start_line to end_line).",
         _object({"path": {"type": "string"}, "start_line": {"type": "integer", "minimum": 1},
                  "end_line": {"type": "integer", "minimum": 1}}, ["path"]), _read_file, headline="path"),
    Tool("list_files", "List the files and folders in a folder (default: the current one).",
         _object({"path": {"type": "string"}}, []), _list_files, headline="path"),
    Tool("write_file", "Write a text file whole (created, or replaced), with the given content.",
         _object({"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
         _write_file, preview=write_preview, headline="path"),
)}
