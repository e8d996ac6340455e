"""A message written in the user's own editor (/edit with no text): $VISUAL, $EDITOR,
or the first editor installed, as prompt_toolkit's Ctrl-X Ctrl-E picks."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile

from chatterm.errors import ChattermError


def compose() -> str:
    """A message written in $VISUAL/$EDITOR (what the file holds once it closes)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or next(
        (e for e in ("editor", "nano", "vim", "vi", "emacs") if shutil.which(e)), "vi")  # as Ctrl-X Ctrl-E does
    fd, name = tempfile.mkstemp(prefix="chatterm-", suffix=".md")
    os.close(fd)
    try:
        try:
            subprocess.run([*shlex.split(editor), name], check=True)
        except (OSError, ValueError, subprocess.CalledProcessError) as e:
            raise ChattermError(f"cannot use the editor {editor!r} ({e}); set VISUAL or EDITOR") from None
        with open(name, encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    finally:
        os.unlink(name)
