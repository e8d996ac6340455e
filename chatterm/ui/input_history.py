"""The prompt's input history (Up, Ctrl-R, suggestions), kept in the data folder. A
history file that cannot be used never costs the chat: the history stays in memory,
and `problem` says why, for the chat to tell once."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatterm import paths, safe_files


class _File(FileHistory):
    """The input history file; one that cannot be read or written (a folder in its
    place, a full disk, permissions changed mid-chat) leaves the history in memory,
    and `problem` says why, for the chat to tell once."""

    def __init__(self, path: str):
        super().__init__(path)
        self.problem = ""

    def load_history_strings(self) -> Iterator[str]:
        try:
            yield from super().load_history_strings()
        except (OSError, ValueError) as e:
            self.problem = f"cannot read the history file {self.filename!s}: {getattr(e, 'strerror', None) or e}"

    def store_string(self, string: str) -> None:
        if self.problem:
            return
        try:
            super().store_string(string)
        except (OSError, ValueError) as e:
            self.problem = (f"cannot write the history file {self.filename!s}: "
                            f"{getattr(e, 'strerror', None) or e}; this chat's history stays in memory")


class _Unsaved(InMemoryHistory):
    """The history in memory only, and why."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


def open_history() -> History:
    path = paths.data_dir() / "history"
    why = safe_files.why_unreadable(path)
    if why not in (None, "no such file"):  # a FIFO would block the first Enter
        return _Unsaved(f"the history file {path} is {why}; this chat's history stays in memory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        return _File(str(path))
    except OSError as e:
        return _Unsaved(f"cannot use the history file {path}: {e.strerror or e}; this chat's history stays in memory")
