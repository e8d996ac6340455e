"""The one place that talks to a Hugging Face hub (huggingface.co, a mirror, or the tests'
local hub): `HF_ENDPOINT` picks it, `HF_TOKEN` (or `hf auth login`) authenticates.

huggingface_hub lists a repository's files with their sizes and SHA-256 and builds the
URLs and the headers (token, user agent). The bytes are streamed here with httpx rather
than through `hf_hub_download`, because chatterm needs what that does not give: its own
progress display, resuming a `.part` file it can verify, the SHA-256 checked, and one
clear line for every failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chatterm.errors import ChattermError

DEFAULT_ENDPOINT = "https://huggingface.co"


class HubError(ChattermError):
    """The hub refused, could not be reached, or sent something wrong."""


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    name: str
    size: int | None
    sha256: str | None  # the LFS object id: the SHA-256 of the file's bytes


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def list_files(repo: str) -> dict[str, RemoteFile]:
    """Every file of `repo` by name, with the size and SHA-256 the hub records."""
    from huggingface_hub import HfApi, errors

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo, files_metadata=True)
    except errors.GatedRepoError:
        raise HubError(f"{repo} is gated: accept its terms at {endpoint()}/{repo} and set HF_TOKEN "
                       "to a token of that account") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"no model repository {repo} on {endpoint()} (a private one needs HF_TOKEN)") from None
    except errors.HfHubHTTPError as e:
        raise HubError(f"{endpoint()} refused to list {repo}: {_status(e)}") from None
    except errors.HFValidationError:
        raise HubError(f"{repo!r} is not a repository name (OWNER/NAME)") from None
    except (OSError, ValueError) as e:  # transport errors, a proxy's HTML page
        raise HubError(unreachable(e)) from None
    except Exception as e:  # httpx2/httpx transport errors derive from Exception only
        raise HubError(unreachable(e)) from None
    files = {}
    for s in info.siblings or []:
        lfs = s.lfs
        files[s.rfilename] = RemoteFile(repo, s.rfilename, lfs.size if lfs else s.size,
                                        lfs.sha256 if lfs else None)
    return files


@contextmanager
def stream(file: RemoteFile, start: int) -> Iterator[tuple[Any, int]]:
    """The file's bytes from offset `start`: (an iterator of chunks, the offset they
    really begin at: `start`, or 0 when the server ignores the range)."""
    import httpx
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(file.repo, file.name, endpoint=endpoint())
    headers = {**build_hf_headers(library_name="chatterm"), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    timeout = httpx.Timeout(30.0, read=60.0)
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
        if r.status_code in (401, 403):
            gated = r.headers.get("X-Error-Code") == "GatedRepo"
            raise HubError(f"{file.repo}: {'gated, ' if gated else ''}access denied for {file.name} "
                           "(set HF_TOKEN to a token that may read it)")
        if r.status_code == 404:
            raise HubError(f"{file.repo} has no file {file.name} (any more)")
        if r.status_code >= 400:
            raise HubError(f"{endpoint()} answered HTTP {r.status_code} for {file.repo}/{file.name}")
        yield r.iter_bytes(1 << 20), start if r.status_code == 206 else 0


_NETWORK_WORDS = (
    (("name or service not known", "nodename nor servname", "temporary failure in name resolution",
      "no address associated"), "its name does not resolve (no network, or no DNS?)"),
    (("connection refused",), "the connection was refused (nothing listens there)"),
    (("timed out", "timeout"), "no answer in time (no network, or a firewall?)"),
    (("network is unreachable", "no route to host"), "the network is unreachable (offline?)"),
    (("certificate", "ssl"), "its TLS certificate was not accepted (a proxy in between?)"),
)


def unreachable(e: BaseException) -> str:
    """Why the hub could not be reached, in words rather than an errno, and what to do."""
    text = _reason(e)
    lowered = text.lower()
    why = next((words for needles, words in _NETWORK_WORDS if any(n in lowered for n in needles)), text)
    return (f"cannot reach {endpoint()}: {why}; a mirror of the hub works too: set HF_ENDPOINT to its "
            "address")


def _status(e: Any) -> str:
    response = getattr(e, "response", None)
    code = getattr(response, "status_code", None)
    return f"HTTP {code}" if code else _reason(e)


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text.splitlines()[0][:200] if text else type(e).__name__
