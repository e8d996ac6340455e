"""Text files added to the next message (`/file`, `-f`): paths, globs and folders
read as UTF-8 text, each fenced with its name so the model can tell them apart.

Refused with one line each: a missing path, a binary file, a file that is not UTF-8,
anything but a regular file (a FIFO, a device, a symlink loop: never opened to block
or read without end), more than `MAX_BYTES` in all. In a folder, hidden entries are
skipped and binary, non-UTF-8 and non-regular files are left out and counted, so that
`/file src/` takes the sources.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from chatterm import safe_files
from chatterm.errors import InputError

MAX_BYTES = 1_000_000  # of text in one message's files
SNIFF = 8192  # bytes looked at for a NUL (binary) before decoding
LANGUAGES = {".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go",
             ".c": "c", ".h": "c", ".cpp": "cpp", ".java": "java", ".rb": "ruby", ".sh": "bash",
             ".md": "markdown", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
             ".html": "html", ".css": "css", ".sql": "sql", ".txt": "text"}


@dataclass
class Attachment:
    name: str  # as the user named it (relative paths stay relative)
    text: str
    tokens: int | None = None  # set once counted by the model's tokenizer

    def block(self) -> str:
        """The file fenced for the model, with a fence longer than any inside it."""
        fence = "`" * max(3, _longest_run(self.text, "`") + 1)
        language = LANGUAGES.get(Path(self.name).suffix.lower(), "")
        return f"{self.name}:\n{fence}{language}\n{self.text.rstrip(chr(10))}\n{fence}"


@dataclass
class Gathered:
    files: list[Attachment] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name (why)" of files left out of folders


def gather(patterns: list[str], already: int = 0) -> Gathered:
    """The files `patterns` name (paths, globs, folders); `already`: bytes attached before."""
    found = Gathered()
    total = already
    for pattern in patterns:
        for path, explicit in _expand(pattern):
            if total + _size(path) > MAX_BYTES:  # known before reading a byte of it
                raise InputError(f"{pattern}: more than {MAX_BYTES // 1000:,} KB of text in one message's files; "
                                 "name fewer or smaller files")
            text, why = _read(path, MAX_BYTES - total)
            if why:
                if explicit:
                    raise InputError(f"{path}: {why}")
                found.skipped.append(f"{path} ({why})")
                continue
            total += len(text.encode("utf-8"))
            found.files.append(Attachment(str(path), text))
    return found


def message(files: list[Attachment], question: str) -> str:
    """The user message: the files, then what was asked about them."""
    return "\n\n".join([*(f.block() for f in files), question])


def _expand(pattern: str) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for a path, a glob or a folder."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        return [(p, False) for p in _walk(path)]
    why = safe_files.why_unreadable(path)
    if why is None:
        return [(path, True)]
    if glob.has_magic(pattern):
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        files = [Path(m) for m in matches if not Path(m).is_dir()]  # _read tells the rest why not
        if not files:
            raise InputError(f"{pattern}: no file matches")
        return [(p, False) for p in files]
    raise InputError(f"{pattern}: {'no such file or folder' if why == 'no such file' else why}")


def _walk(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return files


def _size(path: Path) -> int:
    """The size of a regular file (0 for anything else: it is refused when read)."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return st.st_size if safe_files.stat.S_ISREG(st.st_mode) else 0


def _read(path: Path, limit: int) -> tuple[str, str]:
    """(text, "") or ("", why it is not text)."""
    why = safe_files.why_unreadable(path)
    if why:
        return "", f"{why}, not read"
    try:
        data = safe_files.read_bytes(path, limit)
    except safe_files.RefusedFile as e:
        return "", str(e).removeprefix(f"file {path} ").removeprefix("is ")
    except OSError as e:
        return "", f"cannot read it: {e.strerror or e}"
    if b"\0" in data[:SNIFF]:
        return "", "a binary file, not text"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as e:
        return "", f"not UTF-8 text (invalid byte at offset {e.start}); convert it first, e.g. iconv -t UTF-8"


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)
