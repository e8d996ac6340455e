"""The tools a conversation may call, and who said yes: the tools enabled, those
pre-approved (`--yes`), those the user allowed for the session ("always"), the
per-turn limit. A call runs only once decided YES: by the user, or by one of those."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from chatterm.errors import ChattermError, ConfigError
from chatterm.tools.builtin import BUILTIN, Done, Tool
from chatterm.tools.calls import YES, ToolCall, ToolResult

CALL_LIMIT = 8  # calls a turn may make before the model is told to answer
ALWAYS = "always (this session)"


def select(spec: str | Iterable[str]) -> list[Tool]:
    """Tools by name: "run,python", "all", or a list of names (unknown: ConfigError)."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if "all" in names:
        return list(BUILTIN.values())
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise ConfigError(f"unknown tool {unknown[0]!r}; the tools are {', '.join(BUILTIN)} (or all)")
    return [BUILTIN[n] for n in dict.fromkeys(names)]


class Toolbox:
    def __init__(self, tools: Iterable[Tool] = (), preapproved: Iterable[str] = (), limit: int = CALL_LIMIT,
                 choice: str = "auto"):
        """`choice`: "auto" (the model decides) or "required" (its first reply of a turn
        is a call, as OpenAI's tool_choice)."""
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.preapproved = set(preapproved)  # --yes NAME (or "all")
        self.always: set[str] = set()  # "always this tool", for this session
        self.limit = limit
        self.choice = choice

    def __bool__(self) -> bool:
        return bool(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    # Both rebind `tools` rather than change it: MCP servers add and remove their tools
    # from the hub's thread while the chat reads them.
    def enable(self, tools: Iterable[Tool]) -> None:
        self.tools = {**self.tools, **{t.name: t for t in tools}}

    def disable(self, names: Iterable[str] | None = None) -> None:
        """`names` off (None: all of them)."""
        gone = set(self.tools) if names is None else set(names)
        self.tools = {n: t for n, t in self.tools.items() if n not in gone}
        # "always" was said of a tool as it was offered: one offered again (an MCP
        # server restarted) is asked for again.
        self.always -= gone

    def decide_beforehand(self, call: ToolCall) -> None:
        """Decide what needs no question: a call that does not parse or names no
        enabled tool goes back to the model as an error; a pre-approved tool runs."""
        if call.arguments is None or call.name not in self.tools:
            call.decline("the call is not valid")
        elif self.runs_unasked(call.name):
            call.approve(said_by=ALWAYS if call.name in self.always else f"--yes {call.name}")

    def runs_unasked(self, name: str) -> bool:
        """Whether tool `name`'s calls run without a question (always, or --yes)."""
        return name in self.always or name in self.preapproved or "all" in self.preapproved

    def allow_always(self, call: ToolCall) -> None:
        """The user's "always": this call runs, and this tool's next ones without asking."""
        self.always.add(call.name)
        call.approve(said_by=ALWAYS)

    def run(self, call: ToolCall, cancelled: Callable[[], bool]) -> ToolResult:
        """The call's result: run once approved; otherwise why not, for the model."""
        if call.arguments is None:
            return ToolResult(call, f"error: {call.error}. Write the call again, valid.", "did not parse", ok=False)
        tool = self.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.tools) or "none"
            return ToolResult(call, f"error: there is no tool {call.name!r} (the tools: {known})",
                           "no such tool", ok=False)
        if call.decision != YES:
            return ToolResult(call, "The user declined this call; it did not run. Ask or go on without it.",
                           "declined", ok=False)
        problem = check_arguments(tool, call.arguments)
        if problem:
            return ToolResult(call, f"error: {problem}", "invalid arguments", ok=False)
        try:
            done = tool.run(call.arguments, cancelled)
        except OSError as e:
            done = Done(f"error: {e.strerror or e}", "failed", ok=False)
        except ValueError as e:  # arguments no program can take: a NUL byte, a lone surrogate
            done = Done(f"error: {' '.join(str(e).split())[:200]}", "failed", ok=False)
        except ChattermError as e:  # the user's tools.toml: said, and the chat goes on
            done = Done(f"error: {e}", "failed", ok=False)
        return ToolResult(call, done.text, done.summary, done.ok)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "boolean": bool, "number": (int, float), "object": dict, "array": list}


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> str:
    """What is wrong with `arguments` for `tool`'s schema ("" when nothing): the
    required keys, and each known key's type."""
    schema = tool.parameters
    for key in schema.get("required", []):
        if key not in arguments:
            return f"{tool.name} needs {key!r}"
    for key, value in arguments.items():
        spec = schema.get("properties", {}).get(key)
        if spec is None:
            continue
        wanted = _TYPES.get(spec.get("type", ""))
        if wanted is not None and (not isinstance(value, wanted) or (spec.get("type") == "integer"
                                                                      and isinstance(value, bool))):
            return f"{key!r} must be {spec['type']}"
    return ""


def declined_for_limit(call: ToolCall, limit: int) -> ToolResult:
    call.decline(f"the limit of {limit} calls a turn")
    return ToolResult(call, f"Not run: this turn reached its limit of {limit} tool calls. Answer with what you have.",
                   f"not run: limit of {limit} calls", ok=False)


def declined_as_repeat(call: ToolCall, earlier: str) -> ToolResult:
    """A call made before in this turn is not run again: the model gets what it gave
    then, and is asked to answer (small models otherwise repeat a call every round)."""
    call.decline("a repeat of an earlier call")
    return ToolResult(call, f"Not run again: you made this exact call before in this turn, and it gave:\n{earlier}\n"
                            "Use that result: answer the user now, or change the code if it failed.",
                      "not run: a repeat", ok=False)
