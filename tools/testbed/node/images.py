"""Container images for the real node without a registry: OCI archives written here (the pause
image, a Debian base for smoke pods) or by another build (the Lockstep image), imported into
containerd's ``k8s.io`` namespace, where the kubelet finds them.

Archives live in the cache (``${LOCKSTEP_CACHE:-~/.cache/lockstep}/node/images``), named by a
hash of their inputs, so a warm ``up`` builds nothing; an import is skipped when containerd
already holds the same archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from testbed.controlplane.state import ClusterError, log

from . import paths

PAUSE_IMAGE = "localhost/pause:lockstep"
SMOKE_IMAGE = "localhost/lockstep-smoke:bookworm"
LOCKSTEP_IMAGE = "localhost/lockstep:dev"
TOOL_IMAGE_REPOSITORY = "docker.io/lockstep-examples"

# The sandbox's PID 1: sleeps until told to stop, and reaps orphans as upstream pause does.
PAUSE_SOURCE = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_oci_archive(
    archive: Path, name: str, layers: list[Path], entrypoint: list[str], cmd: list[str]
) -> None:
    """Write an OCI image layout as a tar: uncompressed ``layers`` (tar files) and a config.

    ``io.containerd.image.name`` in the index names the image on ``ctr images import``.
    """
    blobs: dict[str, bytes | Path] = {}
    layer_descriptors, diff_ids = [], []
    for layer in layers:
        digest = _sha256_file(layer)
        blobs[digest] = layer
        diff_ids.append(f"sha256:{digest}")
        layer_descriptors.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{digest}",
                "size": layer.stat().st_size,
            }
        )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [f"PATH={DEFAULT_PATH}"],
            "Entrypoint": entrypoint,
            "Cmd": cmd,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }

    def add_json(document: object, media_type: str) -> dict[str, object]:
        data = json.dumps(document, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    config_descriptor = add_json(config, "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layer_descriptors,
    }
    manifest_descriptor = add_json(manifest, "application/vnd.oci.image.manifest.v1+json")
    manifest_descriptor["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    files: dict[str, bytes | Path] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index).encode(),
        **{f"blobs/sha256/{digest}": blob for digest, blob in blobs.items()},
    }
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        for member, content in files.items():
            if isinstance(content, Path):
                tar.add(content, arcname=member)
            else:
                info = tarfile.TarInfo(member)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    partial.replace(archive)


def _tar_directory(root: Path, layer: Path) -> None:
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(layer), "."],
        check=True,
        capture_output=True,
    )


def pause_archive() -> Path:
    """Build the pause image (a static C program) into the cache, once per source."""
    tag = hashlib.sha256(PAUSE_SOURCE.encode()).hexdigest()[:12]
    archive = paths.image_cache() / f"pause-{tag}.oci.tar"
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "rootfs"
        root.mkdir()
        source = Path(scratch) / "pause.c"
        source.write_text(PAUSE_SOURCE)
        result = subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(root / "pause"), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"building the pause image failed (gcc -static):\n{result.stderr}")
        layer = Path(scratch) / "layer.tar"
        _tar_directory(root, layer)
        write_oci_archive(archive, PAUSE_IMAGE, [layer], ["/pause"], [])
    return archive


def debian_rootfs() -> Path:
    """A Debian bookworm minbase root (debootstrap, ~30 s, once per cache)."""
    rootfs = paths.cache() / "rootfs-bookworm"
    if rootfs.is_dir():
        return rootfs
    partial = rootfs.with_name("rootfs-bookworm.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    log("debootstrap --variant=minbase bookworm (once per cache)")
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(partial)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"debootstrap failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    partial.rename(rootfs)
    return rootfs


def smoke_archive() -> Path:
    """Debian minbase plus static busybox (``nc``, ``httpd``, ``wget``) for the smoke pods."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise ClusterError("the smoke image needs /bin/busybox: apt-get install busybox-static")
    archive = paths.image_cache() / f"smoke-{_sha256_file(busybox)[:12]}.oci.tar"
    if archive.exists():
        return archive
    rootfs = debian_rootfs()
    with tempfile.TemporaryDirectory(dir=paths.image_cache()) as scratch:
        base = Path(scratch) / "base.tar"
        _tar_directory(rootfs, base)
        extra = Path(scratch) / "busybox"
        (extra / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(busybox, extra / "usr/local/bin/busybox")
        top = Path(scratch) / "busybox.tar"
        _tar_directory(extra, top)
        write_oci_archive(archive, SMOKE_IMAGE, [base, top], [], ["/bin/bash"])
    return archive


def lockstep_archive() -> Path | None:
    """The real Lockstep image, when its build (``make image``) has left one in the cache."""
    archive = paths.cache().parent / "image" / "lockstep-dev.oci.tar"
    return archive if archive.exists() else None


def tool_archives() -> list[tuple[Path, str]]:
    """Images with a real migration tool that ``scripts/build-tool-images.sh`` left in the cache:
    (archive, the name the example's migration.yaml gives), e.g. Flyway's."""
    folder = paths.cache().parent / "image" / "examples"
    return [
        (archive, f"{TOOL_IMAGE_REPOSITORY}/{archive.name.removesuffix('.oci.tar')}:1")
        for archive in sorted(folder.glob("*.oci.tar"))
    ]


def ctr(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def image_names(socket: Path) -> set[str]:
    return set(ctr(socket, "images", "ls", "-q").stdout.split())


def import_archive(socket: Path, archive: Path, name: str) -> bool:
    """Import ``archive`` as ``name`` unless containerd already holds this very archive."""
    stamp = paths.containerd_root() / f".imported-{name.replace('/', '_')}"
    key = f"{archive}:{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
    if name in image_names(socket) and stamp.exists() and stamp.read_text() == key:
        return False
    # No --digests: a digest-named copy of every imported version would keep each old build's
    # layers in the cache forever. The name comes from the index (ours: io.containerd.image.name;
    # podman's oci-archive: the ref.name under the base name).
    base = name.rsplit(":", 1)[0]
    result = ctr(socket, "images", "import", "--base-name", base, str(archive))
    if result.returncode != 0:
        raise ClusterError(f"ctr images import {archive} failed: {result.stderr.strip()}")
    if name not in image_names(socket):
        raise ClusterError(f"{archive} names no image {name} (its index.json annotations)")
    stamp.write_text(key)
    return True


def import_all(socket: Path, smoke: bool = True) -> list[str]:
    """Import the pause image, the smoke image and, if built, the Lockstep image and the tool
    images."""
    wanted = [(pause_archive(), PAUSE_IMAGE)]
    if smoke:
        wanted.append((smoke_archive(), SMOKE_IMAGE))
    imported = [name for archive, name in wanted if import_archive(socket, archive, name)]
    built = [(archive, LOCKSTEP_IMAGE) for archive in [lockstep_archive()] if archive is not None]
    for archive, name in [*built, *tool_archives()]:
        # Another build may be rewriting the archive right now: a failed import leaves the
        # node usable (pods of that image fail to start, saying why) and is retried next `up`.
        try:
            if import_archive(socket, archive, name):
                imported.append(name)
        except (OSError, ClusterError) as error:
            log(f"warning: {name} not imported: {error}")
    return imported
