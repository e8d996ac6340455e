"""Errors that reach the user as one line on stderr (never as a traceback)."""

from __future__ import annotations


class ChattermError(Exception):
    """A problem the user can fix; the message is the whole story, shown on one line."""

    exit_code = 1

    def adding(self, text: str) -> str:
        """The message with `text` added, where it reads best (before any reference)."""
        return f"{self}{text}"


class ModelFileError(ChattermError):
    """A model file is missing, unreadable, corrupt or of a kind no engine reads."""


class ConfigError(ChattermError):
    """models.toml (packaged or the user's) is invalid."""


class EngineError(ChattermError):
    """An engine is missing, cannot run this model, or failed while running it."""


class ContextOverflowError(ChattermError):
    """The prompt does not fit in the model's context window."""


class TemplateError(ChattermError):
    """A chat template failed to render (or tried to leave the sandbox)."""


class InputError(ChattermError):
    """Unusable input: empty or non-UTF-8 stdin, and the like."""
