"""Every command's failures end as one line and an exit status, never a traceback
(`CHATTERM_DEBUG=1` shows one). Used by the chat and by every subcommand."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from chatterm.errors import ChattermError


def guarded(action: Any, *args: Any) -> None:
    """Run `action`: every failure is one line and an exit status, never a traceback."""
    try:
        action(*args)
    except ChattermError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    except Exception as e:  # never a traceback for users; CHATTERM_DEBUG=1 shows one
        if os.environ.get("CHATTERM_DEBUG"):
            raise
        _fail(f"unexpected error: {type(e).__name__}: {e}", 1)


def _fail(message: str, code: int) -> None:
    from chatterm.ui.sanitize import clean  # messages may quote a server or a file name

    click.echo(f"chatterm: error: {clean(' '.join(message.split()))}", err=True)
    sys.exit(code)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that cannot fail.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
