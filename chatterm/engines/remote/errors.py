"""How a server's failures read: one line naming the server, what failed, and what to
check. The wording lives here, apart from the protocol (`engine`)."""

from __future__ import annotations

import json
from typing import Any

from chatterm.errors import EngineError


class RemoteError(EngineError):
    """The server failed or refused: one line, the session goes on."""


def network_error(httpx: Any, error: Exception, where: str, timeout: float, during_reply: bool = False) -> str:
    """`error` (an httpx exception) talking to `where`."""
    if isinstance(error, httpx.ConnectTimeout):
        return f"{where}: no connection within {min(timeout, 10.0):g} s"
    if isinstance(error, httpx.TimeoutException):
        return f"{where}: the server sent nothing for {timeout:g} s (timeout)"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {where}: {_reason(error)} (is the server running?)"
    if during_reply or isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"{where}: the connection broke off mid-reply ({_reason(error)})"
    return f"{where}: {_reason(error)}"


def http_error(status: int, body: str, where: str, api_key_env: str | None, model: str | None) -> str:
    """HTTP `status` with error `body` from `where` (the server or one of its paths)."""
    detail = error_detail(body)
    if status in (401, 403):
        hint = (f"check ${api_key_env}" if api_key_env
                else "set the key's environment variable with --api-key-env")
        return f"{where}: the server refused the request (HTTP {status}{detail}): {hint}"
    if status == 404:
        return (f"{where}: not found (HTTP 404{detail}): check base_url (usually ending in /v1) "
                f"and the model name {model!r}")
    if status == 429:
        return f"{where}: rate limited (HTTP 429{detail}); wait and try again"
    if status >= 500:
        return f"{where}: server error (HTTP {status}{detail})"
    return f"{where}: request rejected (HTTP {status}{detail})"


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:160] or type(error).__name__


def error_detail(body: str) -> str:
    """The server's own message from an error body, shortened to one line."""
    try:
        return message_detail(json.loads(body))
    except ValueError:
        return message_detail(body)


def message_detail(data: Any) -> str:
    message = data
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message", data)))
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    message = " ".join(str(message).split())[:200]
    return f": {message}" if message else ""
