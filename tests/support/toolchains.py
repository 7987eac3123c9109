"""The real migration tools (Flyway, Knex, Sequelize, Prisma, Django) for the e2e tests.

``tools/toolchains/install.sh`` installs them from their registries into a
cache outside the repository; it is idempotent (a stamp per toolchain), so
running it once per test session costs nothing once the cache is warm.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "tools" / "toolchains" / "install.sh"
# A cold cache downloads Flyway's jars, three npm packages with their trees and Django.
INSTALL_TIMEOUT_SECONDS = 30 * 60


class ToolchainInstallError(RuntimeError):
    """install.sh failed; the message carries its output."""


def root() -> Path:
    """Where the toolchains live (the script's own ``--print-root``)."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--print-root"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return Path(result.stdout.strip())


def install(*names: str, echo: bool = True) -> Path:
    """Run install.sh (all toolchains by default), echoing its progress lines; return the root.

    Progress goes to stderr as it happens when ``echo`` is true (a cold install
    takes minutes, and a silent pause that long looks like a hang).
    """
    started = time.monotonic()
    lines: list[str] = []
    process = subprocess.Popen(
        ["bash", str(INSTALL_SCRIPT), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=pump, name="toolchains-install", daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=INSTALL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
        lines.append(f"(killed after {INSTALL_TIMEOUT_SECONDS} s)\n")
    reader.join(timeout=10)
    if code != 0:
        output = "".join(lines[-200:])
        raise ToolchainInstallError(
            f"tools/toolchains/install.sh {' '.join(names)} exited with {code} after "
            f"{time.monotonic() - started:.0f} s:\n{output}"
        )
    return root()
