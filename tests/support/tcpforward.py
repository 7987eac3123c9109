"""A TCP forwarder that plays kube-proxy for one Service in the test bed.

The test bed has no kube-proxy, and its pod IPs (127.1.x.y) are loopback addresses, which
Endpoints/EndpointSlices reject, so the API server cannot reach a webhook behind a Service. The
chart e2e test points the webhook at `https://localhost:<port>` instead, and this forwarder sends
each connection to one of the operator's Ready pods, as the Service would (TLS passes through
untouched, so the API server still verifies the operator's own certificate: it covers
`localhost`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

CONNECT_TIMEOUT = 2.0


class TcpForwarder:
    def __init__(
        self, backends: Callable[[], list[str]], target_port: int, host: str = "127.0.0.1"
    ) -> None:
        self._backends = backends
        self._target_port = target_port
        self._server = socket.create_server((host, 0))
        self.port: int = self._server.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tcpforward", daemon=True)
        self.connections = 0
        self.failures: list[str] = []
        self._turn = 0

    def start(self) -> TcpForwarder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        """A connection to one Ready backend, round robin; the next one if it refuses."""
        try:
            addresses = self._backends()
        except Exception as error:  # noqa: BLE001 - reported through `failures`
            self.failures.append(f"listing backends: {error}")
            return None
        self._turn += 1
        for offset in range(len(addresses)):
            address = addresses[(self._turn + offset) % len(addresses)]
            try:
                return socket.create_connection(
                    (address, self._target_port), timeout=CONNECT_TIMEOUT
                )
            except OSError as error:
                self.failures.append(f"{address}:{self._target_port}: {error}")
        return None

    def _handle(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        self.connections += 1
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join(timeout=60)
        upstream.close()
        client.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
