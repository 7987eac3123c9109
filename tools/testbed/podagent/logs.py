"""The kubelet log endpoint of the testbed pod agent, and log-file helpers.

The apiserver proxies ``pods/log`` to
``https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>``
and does not verify the serving certificate unless told to, so a self-signed
certificate is enough. Supported query parameters: ``tailLines``,
``limitBytes``, ``follow``. ``previous``, ``timestamps``, ``sinceSeconds`` and
``sinceTime`` are accepted and ignored: logs are plain files without per-line
times, and a restarted container appends to the same file.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("testbed.podlogs")

FOLLOW_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LogSource:
    """One container's log file and whether it may still grow."""

    path: Path
    is_running: Callable[[], bool]


# (namespace, pod, container) -> LogSource, or None when unknown.
LogResolver = Callable[[str, str, str], LogSource | None]


def tail_offset(handle: BinaryIO, lines: int, end: int) -> int:
    """Byte offset where the last ``lines`` lines before ``end`` begin."""
    if lines <= 0:
        return end
    position = end
    newlines = 0
    block = 64 * 1024
    # A trailing newline ends the last line; it does not start a new one.
    if end > 0:
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            position -= 1
    while position > 0:
        start = max(0, position - block)
        handle.seek(start)
        chunk = handle.read(position - start)
        for index in range(len(chunk) - 1, -1, -1):
            if chunk[index : index + 1] == b"\n":
                newlines += 1
                if newlines == lines:
                    return start + index + 1
        position = start
    return 0


def read_log(
    path: Path, *, lines: int | None = None, limit: int | None = None, start: int = 0
) -> tuple[bytes, int]:
    """Log bytes from ``start`` on, or only the last ``lines`` lines; at most ``limit`` of them.

    Like the kubelet's ``limitBytes``, the limit keeps the *first* bytes of the
    selection. Returns the bytes and the file offset just after them.
    """
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, 2)
            begin = tail_offset(handle, lines, end) if lines is not None else 0
            begin = max(begin, start)
            if limit is not None:
                end = min(end, begin + limit)
            handle.seek(begin)
            data = handle.read(max(0, end - begin))
            return data, begin + len(data)
    except FileNotFoundError:
        return b"", start


def read_tail(
    path: Path, *, lines: int | None = None, limit: int | None = None, start: int = 0
) -> bytes:
    return read_log(path, lines=lines, limit=limit, start=start)[0]


def ensure_certificate(directory: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1 (created once, with openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    if not (cert.exists() and key.exists()):
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "3650",
                "-subj", f"/CN={common_name}",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert, key


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or values[0] == "":
        return None
    return int(values[0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _LogHTTPServer

    def setup(self) -> None:
        # The listening socket does not handshake on accept (see LogServer).
        self.request.settimeout(30)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("log server: " + format, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts == ["healthz"]:
            self._send_text(200, "ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._send_text(404, f"the testbed pod agent does not serve {url.path}")
            return
        source = self.server.resolver(parts[1], parts[2], parts[3])
        if source is None:
            self._send_text(404, f"container {parts[3]} of pod {parts[1]}/{parts[2]} not found")
            return
        try:
            query = parse_qs(url.query)
            lines = _int_param(query, "tailLines")
            limit = _int_param(query, "limitBytes")
        except ValueError as error:
            self._send_text(400, f"bad query: {error}")
            return
        follow = (query.get("follow") or ["false"])[0].lower() in ("true", "1")
        if follow:
            self._follow(source, lines, limit)
        else:
            data = read_tail(source.path, lines=lines, limit=limit)
            self._send(200, data)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, (text + "\n").encode())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _follow(self, source: LogSource, lines: int | None, limit: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        remaining = limit
        data, offset = read_log(source.path, lines=lines, limit=limit)
        try:
            while True:
                if data:
                    self._chunk(data)
                    if remaining is not None:
                        remaining -= len(data)
                if remaining is not None and remaining <= 0:
                    break
                running = source.is_running()
                data, offset = read_log(source.path, limit=remaining, start=offset)
                if not data and not running:
                    break
                if not data:
                    time.sleep(FOLLOW_POLL_SECONDS)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            log.debug("log follower went away")
        self.close_connection = True


class _LogHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    resolver: LogResolver

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("log server: request from %s failed", client_address, exc_info=True)


class LogServer:
    """HTTPS server for ``/containerLogs``, on its own thread."""

    def __init__(
        self,
        resolver: LogResolver,
        cert: Path,
        key: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = _LogHTTPServer((host, port), _Handler)
        self._server.resolver = resolver
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        # The handshake runs in the request thread, not in the accept loop.
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="log-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
