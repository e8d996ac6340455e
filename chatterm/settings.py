"""Sampling settings, declared once: each field of `Sampling` carries its type, range
and help, and everything else is derived from that declaration: the click options,
the validation of models.toml and of session files, `/set` and its completion.

Imported by the command line at start-up, so it stays light (no engine, no rich).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from chatterm.errors import ChattermError


class SettingError(ChattermError):
    """A sampling value of the wrong type or out of range."""


class Setting:
    """One setting as `Sampling` declares it (a plain class: the command line builds
    these at start-up, and a dataclass costs milliseconds to create)."""

    def __init__(self, name: str, kind: type, low: float | None, high: float | None, help: str,
                 optional: bool):
        self.name, self.kind, self.low, self.high, self.help = name, kind, low, high, help
        self.optional = optional  # None is a value ("seed": a random one)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def show(self, value: Any) -> str:
        """`value` as people read it: on/off, "random" for no seed, "as the model
        decides" for no choice; never Python's None."""
        if value is None:
            return "random" if self.name == "seed" else "as the model decides"
        if self.kind is bool:
            return "on" if value else "off"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def range_text(self) -> str:
        if self.kind is bool:
            return "on or off"
        return f"{self.low:g}-{self.high:,}" if self.kind is int else f"{self.low:g}-{self.high:g}"

    def check(self, value: Any) -> Any:
        """`value` as this setting's type, or SettingError saying what is wrong."""
        if value is None and self.optional:
            return None
        if self.kind is bool:
            if not isinstance(value, bool):
                raise self._wrong_type(value)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or self.kind is int and not isinstance(value, int):
            raise self._wrong_type(value)
        out = (self.low is not None and value < self.low) or (self.high is not None and value > self.high)
        if out or value != value:  # NaN is within no range
            raise SettingError(f"{self.name} = {shown_number(value)} is out of range ({self.range_text()})")
        return self.kind(value)

    def _wrong_type(self, value: Any) -> SettingError:
        kind = {int: "an integer", float: "a number", bool: "on or off"}[self.kind]
        return SettingError(f"{self.name} must be {kind}, not {value!r}")

    def parse(self, text: str) -> Any:
        """A value typed by the user (`/set`)."""
        text = text.strip()
        if self.kind is bool:
            words = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
            if text.lower() not in words:
                raise self._wrong_type(text)
            return words[text.lower()]
        if self.optional and text.lower() in ("none", "random"):
            return None
        try:
            value = parse_number(text, self.kind)
        except ValueError:
            raise self._wrong_type(text) from None
        return self.check(value)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")


def parse_number(text: str, kind: type = float) -> float:
    """A number as people type it in ASCII: `0.5`, `-2`, `1e-3`. Python's own
    parsers also take `1_0`, ` 5 `, other scripts' digits, `nan` and `inf`; those are
    ValueError here, as is a number that is not finite."""
    pattern = _INTEGER if kind is int else _NUMBER
    if not pattern.fullmatch(text) or not text.isascii():
        raise ValueError(f"not a number: {text!r}")
    value = kind(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def shown_number(value: float) -> str:
    """A number as an error shows it: a huge one by its size, not its 400 digits."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:8]}… ({len(text)} digits)"


INT_MAX = 2**31 - 1  # what the engines take (C ints)


def _setting(default: Any, kind: type, help: str, low: float = 0, high: float | None = None,
             optional: bool = False) -> Any:
    high = (INT_MAX if kind is int else 1e6) if high is None else high
    return field(default=default, metadata={"setting": (kind, low, high, help, optional)})


S = TypeVar("S", bound="Sampling")


@dataclass
class Sampling:
    temperature: float = _setting(0.7, float, "Randomness of sampling; 0 = greedy.", high=100)
    top_k: int = _setting(40, int, "Sample from the K likeliest tokens (0 = all).")
    top_p: float = _setting(0.95, float, "Nucleus sampling: the likeliest tokens holding this mass.", high=1)
    repeat_penalty: float = _setting(1.1, float, "Penalty for repeating recent tokens (1 = none).", high=100)
    seed: int | None = _setting(None, int, "Seed for reproducible sampling (unset: random).",
                                optional=True)
    max_tokens: int = _setting(1024, int, "Most tokens in one reply.", low=1)
    # None: as the model's template decides. Only templates with a switch (Qwen3's
    # enable_thinking) and servers that take chat_template_kwargs obey it.
    think: bool | None = _setting(None, bool, "Reasoning models: think before answering (on/off).",
                                  optional=True)
    compact: bool = _setting(True, bool, "When the window fills, summarize older turns (off: leave them out).")
    verify: int = _setting(3, int, "Code answers that fail the question's examples: fresh samples checked "
                                   "(0 = none).", high=10)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def updated(self: S, **values: Any) -> S:
        """A copy with `values` (None and unknown names left out) over these."""
        known = {k: v for k, v in values.items() if k in self.names() and v is not None}
        return type(self)(**{**self.__dict__, **known})


@dataclass
class Decoding(Sampling):
    """What one reply asks of the engine: the user's sampling, and the instructions the
    conversation adds for this request (never a user setting, never saved)."""

    # Go on past end of generation to max_tokens (benchmarks; llama.cpp's --ignore-eos).
    ignore_eog: bool = False
    # Control tokens streamed as their text (tools on: Llama's <|python_tag|> and
    # Mistral's [TOOL_CALLS] are control tokens that mark a call).
    special_pieces: bool = False
    # The tools whose calls llama.cpp keeps to their JSON Schema, from the `<tool_call>`
    # marker on (a lazy grammar: free text before it).
    call_schemas: list | None = None
    # The reply is a call (tool_choice "required"): the grammar from its first token.
    call_required: bool = False
    # The reply is JSON matching it (--schema; a grammar on llama.cpp).
    json_schema: dict | None = None

    @classmethod
    def of(cls, sampling: Sampling, **instructions: Any) -> Decoding:
        """`sampling`'s settings, with `instructions` and no others."""
        return cls(**{f.name: getattr(sampling, f.name) for f in fields(Sampling)}, **instructions)


SETTINGS: dict[str, Setting] = {
    f.name: Setting(f.name, *f.metadata["setting"]) for f in fields(Sampling) if "setting" in f.metadata}


def validated(values: Any, where: str) -> dict[str, Any]:
    """A table of settings (models.toml's `sampling`, a session's) checked against
    the schema; SettingError names `where` and the first problem."""
    if not isinstance(values, dict):
        raise SettingError(f"{where}: sampling must be a table of settings")
    checked = {}
    for key, value in values.items():
        setting = SETTINGS.get(key)
        if setting is None:
            raise SettingError(f"{where}: unknown sampling setting {key!r} (allowed: {', '.join(SETTINGS)})")
        try:
            checked[key] = setting.check(value)
        except SettingError as e:
            raise SettingError(f"{where}: sampling.{e}") from None
    return checked
