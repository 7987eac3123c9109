"""Fixtures for the image smoke tests: the image `make image` builds, a PostgreSQL the container
reaches over its private network, and one pod's worth of shared settings per test.

The session builds the image when its inputs changed (`scripts/build-image.sh` is a no-op
otherwise), so the tests always run the current sources. The network namespace and the
PostgreSQL restarted to listen on it are undone at the end of the session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import imagetest
from tcpforward import TcpForwarder
from testbed import databases, isolated_net


@pytest.fixture(scope="session")
def podman() -> imagetest.Podman:
    if os.geteuid() != 0:
        pytest.skip("the image smoke tests need root: rootful podman, a network namespace")
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and apt-get is not there to install it")
    return imagetest.build()


@pytest.fixture(scope="session")
def image_postgres(podman: imagetest.Podman) -> Iterator[tuple[str, isolated_net.IsolatedNet]]:
    """(admin URL from the host, the network): the server listens on the network's host end."""
    admin_url = imagetest.start_postgres()
    port = make_url(admin_url).port
    assert port is not None
    net = isolated_net.create([port])
    try:
        imagetest.listen_also_on(admin_url, net.host_ip)
        yield admin_url, net
    finally:
        net.close()
        imagetest.stop_postgres()


@pytest.fixture(scope="session")
def image_mariadb(
    image_postgres: tuple[str, isolated_net.IsolatedNet],
) -> Iterator[tuple[str, int]]:
    """(admin URL from the host, the port the container reaches it on at the network's host
    address). The shared test MariaDB listens on 127.0.0.1 only; a forwarder on the network's
    host address stands in for the Service in front of a database."""
    admin_url = databases.ensure_mariadb()
    port = make_url(admin_url).port
    assert port is not None
    net = image_postgres[1]
    forwarder = TcpForwarder(lambda: ["127.0.0.1"], port, host=net.host_ip).start()
    try:
        isolated_net.allow(net, forwarder.port)
        yield admin_url, forwarder.port
    finally:
        forwarder.stop()


@pytest.fixture
def database(image_postgres: tuple[str, isolated_net.IsolatedNet]) -> Iterator[tuple[str, str]]:
    """A fresh database: (URL from the host, URL from the container)."""
    admin_url, net = image_postgres
    with imagetest.fresh_database(admin_url, net.host_ip) as urls:
        yield urls


@pytest.fixture
def pod(
    podman: imagetest.Podman,
    image_postgres: tuple[str, isolated_net.IsolatedNet],
    database: tuple[str, str],
    tmp_path: Path,
) -> Iterator[imagetest.Pod]:
    pod = imagetest.Pod(podman, image_postgres[1], database[1], tmp_path)
    yield pod
    # Containers a failed test left running (named ones only run detached).
    for name in pod.started:
        podman("rm", "--force", "--time", "0", name)
