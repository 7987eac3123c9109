"""A git server on loopback for the GitOps e2e tests: real smart HTTP (`git http-backend`).

Flux's GitRepository accepts only http(s) and ssh URLs, and go-git speaks only the smart HTTP
protocol, so `git daemon` (git://) and plain file serving are out. `git http-backend` is git's
own CGI program for smart HTTP; a small threaded HTTP server runs it per request, for fetches
(Flux) and for pushes (the tests push over HTTP as a user would). No authentication: it listens
on 127.0.0.1 only and lives as long as the test session.

    with GitServer(root) as server:
        work = server.create("fleet")          # a bare repository and a clone to commit in
        work.write("apps/x.yaml", "...")
        work.commit_and_push("add x")          # what Flux sees next
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from testbed import localhost

AUTHOR = {
    "GIT_AUTHOR_NAME": "Lockstep e2e",
    "GIT_AUTHOR_EMAIL": "e2e@lockstep.dev",
    "GIT_COMMITTER_NAME": "Lockstep e2e",
    "GIT_COMMITTER_EMAIL": "e2e@lockstep.dev",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git, fail with its stderr; a clean environment so the user's config cannot leak in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd or Path("/")),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        **AUTHOR,
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to `git http-backend` (CGI) and relays its answer."""

    server: _Server

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _backend(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REMOTE_USER": "e2e",  # http-backend refuses pushes from anonymous users
            "REMOTE_ADDR": self.client_address[0],
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, separator, payload = result.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, _, payload = result.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.server.requests.append(f"{self.command} {url.path}?{url.query} {status}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the requests are kept in `GitServer.requests` instead of stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", localhost.free_port()), _Handler)


class Workspace:
    """A clone of one served repository: write files, commit, push over HTTP."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, relative: str) -> None:
        git("rm", "-r", "-q", relative, cwd=self.path)

    def commit_and_push(self, message: str) -> str:
        """Commit everything and push it to `main`; the new commit's full hash."""
        git("add", "-A", cwd=self.path)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.path)
        git("push", "-q", "origin", "HEAD:main", cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path).strip()


class GitServer:
    """Bare repositories under `root`/repos, served at http://127.0.0.1:<port>/<name>.git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repos = root / "repos"
        self.repos.mkdir(parents=True, exist_ok=True)
        self._server = _Server(self.repos)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        """Every request served so far (`GET /x.git/info/refs?service=... 200`), oldest first."""
        return list(self._server.requests)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def create(self, name: str) -> Workspace:
        """A new bare repository (default branch main, pushes allowed) and a clone of it."""
        bare = self.repos / f"{name}.git"
        git("init", "-q", "--bare", "--initial-branch=main", str(bare))
        git("config", "http.receivepack", "true", cwd=bare)
        clone = self.root / "work" / name
        shutil.rmtree(clone, ignore_errors=True)
        clone.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", self.url(name), str(clone))
        git("checkout", "-q", "-B", "main", cwd=clone)
        return Workspace(clone, self.url(name))

    def __enter__(self) -> GitServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
