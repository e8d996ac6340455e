"""Starting a Python process of chatterm's own (the engine worker, the chat-template
worker): it imports the chatterm this process runs, not whichever one its working
directory or PYTHONPATH would find first."""

from __future__ import annotations

import sys
from pathlib import Path

# sys.path[0] (the working directory, for -c) becomes this chatterm's parent folder, or
# is dropped when that folder is on the path already.
_BOOT = ("import sys; root = sys.argv.pop(1); sys.path[0:1] = [] if root in sys.path[1:] else [root]; "
         "from {module} import main; main()")
_ROOT = str(Path(__file__).resolve().parents[1])


def command(module: str, *args: str) -> list[str]:
    """The command line that runs `module.main()` in a new Python, with `args` as its
    sys.argv[1:]."""
    return [sys.executable, "-c", _BOOT.format(module=module), _ROOT, *args]
