"""A local Hugging Face hub on 127.0.0.1 for the pull tests: the endpoints huggingface_hub
and chatterm use (`/api/models/OWNER/NAME[/revision/REV]?blobs=true` and
`/OWNER/NAME/resolve/REV/FILE` with ranges), the hub's error codes (RepoNotFound,
GatedRepo, EntryNotFound), and faults on demand: slow, cut connections, corrupt bytes,
sizes larger than any disk."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_local_test_token"


@dataclass
class HubFile:
    data: bytes
    sha256: str = ""
    advertised_size: int | None = None  # a lie about the size (the disk-full test)

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return self.advertised_size or len(self.data)


@dataclass
class Repo:
    files: dict[str, HubFile]
    gated: bool = False


@dataclass
class Faults:
    bytes_per_s: float | None = None  # throttle: time to interrupt a download
    drop_after: int | None = None  # cut the connection after this many bytes, once per count
    drops: int = 0
    corrupt: bool = False  # flip a byte in what is sent (the digest stays the true one)


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    url: str = ""

    def ranges(self, file: str) -> list[str | None]:
        return [r for m, p, r in self.log if m == "GET" and p.endswith("/" + file)]


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _error(self, status: int, code: str, message: str = "") -> None:
            body = json.dumps({"error": message or code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            if message:
                self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _repo(self, name: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if repo.gated and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._error(401, "GatedRepo", "Access to this model is restricted")
                return None
            return repo

        def do_GET(self) -> None:
            hub.log.append((self.command, self.path, self.headers.get("Range")))
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._info("/".join(parts[2:4]))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._file("/".join(parts[:2]), "/".join(parts[4:]))
            self._error(404, "NotFound")

        do_HEAD = do_GET

        def _info(self, name: str) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            siblings = [{"rfilename": n, "size": f.size,
                         "lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": 134}}
                        for n, f in repo.files.items()]
            body = json.dumps({"id": name, "modelId": name, "sha": COMMIT, "private": False,
                               "gated": "auto" if repo.gated else False, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, name: str, filename: str) -> None:
            repo = self._repo(name)
            if repo is None:
                return
            f = repo.files.get(filename)
            if f is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            start = 0
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes="):
                start = int(wanted[6:].split("-")[0])
            data = f.data[start:]
            if hub.faults.corrupt and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{f.sha256}"')
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(f.data) - 1}/{len(f.data)}")
            self.end_headers()
            if self.command == "HEAD":
                return
            self._send(data)

        def _send(self, data: bytes) -> None:
            faults, sent, chunk = hub.faults, 0, 64 * 1024
            began = time.monotonic()
            while sent < len(data):
                if faults.drop_after is not None and faults.drops > 0 and sent >= faults.drop_after:
                    faults.drops -= 1
                    self.close_connection = True
                    self.connection.shutdown(2)  # the connection dies mid-body
                    return
                piece = data[sent:sent + chunk]
                try:
                    self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(piece)
                if faults.bytes_per_s:
                    ahead = sent / faults.bytes_per_s - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)

    return Handler


def serve(hub: Hub) -> tuple[ThreadingHTTPServer, Hub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hub
