"""Chat templates render here, in a process of their own (`python -m` this module),
because a template from a model file is untrusted code even inside Jinja's sandbox:
the sandbox stops it reaching Python's internals, not looping for ever (nested
`range` loops) or filling memory (`'x' * 10**9`, 1 GB of output). This process
stops an output past its budget and runs under an address-space limit; the parent
(`templates.Renderer`) kills it when it takes too long, so the chat never waits
without end.

Protocol: `{"ready": true}` once started, then one JSON request a line on stdin, one
JSON answer a line on stdout: {"text": ...} or {"error": kind, "message": ...}.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from datetime import datetime
from functools import lru_cache
from typing import Any

MEMORY = 1 << 30  # bytes of address space, beyond 8x the request


class Refused(Exception):
    pass


def _raise(message: str) -> None:
    raise Refused(f"chat template raised: {message}")


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Environment(ImmutableSandboxedEnvironment):
        # `*` and `**` build strings and numbers of any size in one step: bounded here.
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > 64 and abs(left) > 1:
                raise Refused("chat template computes a number too large")
            if operator == "*":
                count = right if isinstance(left, (str, list, tuple)) else left
                item = left if isinstance(left, (str, list, tuple)) else right
                if isinstance(item, (str, list, tuple)) and isinstance(count, int) and len(item) * count > _budget[0]:
                    raise Refused("chat template output exceeds its budget")
            return super().call_binop(context, operator, left, right)

    env = Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    return env.from_string(source)


_budget = [0]  # characters the request's output may have


def render(request: dict) -> dict:
    from jinja2 import TemplateSyntaxError
    from jinja2.exceptions import SecurityError, TemplateError

    _budget[0] = request["budget"]
    try:
        template = _compile(request["source"])
        pieces, size = [], 0
        for piece in template.generate(**request["context"]):
            size += len(piece)
            if size > _budget[0]:
                raise Refused(f"chat template output exceeds its budget of {_budget[0]:,} characters")
            pieces.append(piece)
        return {"text": "".join(pieces)}
    except TemplateSyntaxError as e:
        return {"error": "syntax", "message": f"{e.message} (line {e.lineno})"}
    except SecurityError as e:
        return {"error": "sandbox", "message": str(e)}
    except Refused as e:
        return {"error": "raised", "message": str(e)}
    except MemoryError:
        return {"error": "failed", "message": "it needs more memory than a chat template may use"}
    except RecursionError:
        return {"error": "failed", "message": "it recurses too deeply"}
    except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        return {"error": "failed", "message": str(e)}


def _limit_memory(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        pass  # the time budget and the output budget still hold


def _die_with_parent() -> None:
    """A render stuck in a loop must not outlive the chat that asked for it (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    _die_with_parent()
    import jinja2.sandbox  # noqa: F401  (imported before "ready": a render's time is its own)

    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        _limit_memory(MEMORY + 8 * len(line))
        try:
            answer = render(json.loads(line))
        except MemoryError:
            answer = {"error": "failed", "message": "it needs more memory than a chat template may use"}
        sys.stdout.write(json.dumps(answer) + "\n")  # ASCII: no text can fail to encode
        sys.stdout.flush()


if __name__ == "__main__":
    main()
