"""The example app: serves HTTP on $POD_IP:8080 and needs the schema of its version.

Version 1 reads customers.name. Version 2 reads customers.display_name, which only the expand
migration creates: started before it, version 2 crashes, which is what the rollout gate
prevents. (The app writes and reads nothing else: it stands for any real service.)
"""

from __future__ import annotations

import http.server
import os
import sys

import psycopg

COLUMN = {"1": "name", "2": "display_name"}


def check_schema(url: str, version: str) -> None:
    with psycopg.connect(url, connect_timeout=5) as connection:
        connection.execute(f"SELECT {COLUMN[version]} FROM customers LIMIT 1")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"shop v{os.environ.get('APP_VERSION', '1')}\n".encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    version = os.environ.get("APP_VERSION", "1")
    try:
        check_schema(os.environ["DATABASE_URL"], version)
    except psycopg.Error as error:
        print(f"shop v{version}: the schema is not there: {error}", file=sys.stderr)
        return 1
    address = (os.environ.get("POD_IP", "127.0.0.1"), 8080)
    print(f"shop v{version} serving on {address[0]}:{address[1]}", flush=True)
    http.server.HTTPServer(address, Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
