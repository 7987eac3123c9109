"""Images derived from the Lockstep image without a builder: its layers plus one layer of
files, written as a new OCI archive. The real node has no registry, so an example app whose
Dockerfile starts ``FROM python:3.11-slim`` and installs psycopg runs instead on the Lockstep
image's Python (3.11, psycopg included) with the app's own files and entrypoint on top.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from testbed.controlplane.state import REPO_ROOT

from . import images, paths

# Example apps the e2e tests deploy: image repository -> (files into the image, entrypoint).
# Same paths, user and entrypoint as the example's Dockerfile.
EXAMPLE_APPS = {
    "docker.io/lockstep-examples/expand-contract": (
        {"app/app.py": REPO_ROOT / "examples" / "expand-contract" / "app.py"},
        ["python3", "/app/app.py"],
    ),
}
EXAMPLE_TAGS = ("1", "2")  # the versions the expand/contract tests roll out
EXAMPLE_USER = "65532:65532"


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise KeyError(name)
    return member.read()


def derive_archive(
    base: Path,
    archive: Path,
    name: str,
    files: dict[str, Path],
    entrypoint: list[str],
) -> None:
    """Write ``archive``: ``base``'s layers, one more with ``files``, a new entrypoint."""
    with tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        layer = Path(scratch) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            for target, source in sorted(files.items()):
                info = tar.gettarinfo(str(source), arcname=target)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
        layer_bytes = layer.read_bytes()
        layer_digest = hashlib.sha256(layer_bytes).hexdigest()
        with tarfile.open(base) as source_tar, tarfile.open(archive, "w") as out:
            index = json.loads(_read(source_tar, "index.json"))
            manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
            manifest = json.loads(_read(source_tar, f"blobs/sha256/{manifest_digest}"))
            config_digest = manifest["config"]["digest"].split(":", 1)[1]
            config = json.loads(_read(source_tar, f"blobs/sha256/{config_digest}"))
            config["config"].update(Entrypoint=entrypoint, Cmd=[], User=EXAMPLE_USER)
            config["rootfs"]["diff_ids"].append(f"sha256:{layer_digest}")
            config.pop("history", None)  # one entry per layer would be owed for the new one
            blobs: dict[str, bytes] = {layer_digest: layer_bytes}
            config_bytes = json.dumps(config, sort_keys=True).encode()
            blobs[hashlib.sha256(config_bytes).hexdigest()] = config_bytes
            manifest["config"] = {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{hashlib.sha256(config_bytes).hexdigest()}",
                "size": len(config_bytes),
            }
            manifest["layers"].append(
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}",
                    "size": len(layer_bytes),
                }
            )
            manifest.pop("annotations", None)
            manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
            manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
            blobs[manifest_digest] = manifest_bytes
            new_index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{manifest_digest}",
                        "size": len(manifest_bytes),
                        "annotations": {
                            "io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                        },
                    }
                ],
            }
            small = {
                "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                "index.json": json.dumps(new_index).encode(),
                **{f"blobs/sha256/{digest}": data for digest, data in blobs.items()},
            }
            for member_name, data in small.items():
                info = tarfile.TarInfo(member_name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            for layer_descriptor in manifest["layers"][:-1]:
                blob = f"blobs/sha256/{layer_descriptor['digest'].split(':', 1)[1]}"
                member = source_tar.getmember(blob)
                out.addfile(member, source_tar.extractfile(member))


def example_archives(lockstep: Path) -> list[tuple[Path, str]]:
    """The example apps' archives (built once per Lockstep archive and app source)."""
    built = []
    base_key = f"{lockstep.stat().st_size}:{lockstep.stat().st_mtime_ns}"
    for repository, (files, entrypoint) in EXAMPLE_APPS.items():
        digest = hashlib.sha256(base_key.encode())
        for source in files.values():
            digest.update(source.read_bytes())
        name = f"{repository}:{EXAMPLE_TAGS[0]}"
        short = repository.rsplit("/", 1)[1]
        archive = paths.image_cache() / f"{short}-{digest.hexdigest()[:12]}.oci.tar"
        if not archive.exists():
            partial = archive.with_suffix(".partial")
            derive_archive(lockstep, partial, name, files, entrypoint)
            partial.replace(archive)
        built.append((archive, name))
    return built


def import_examples(socket: Path, lockstep: Path) -> list[str]:
    """Import each example app under every tag the tests use (one image, several names)."""
    imported = []
    for archive, name in example_archives(lockstep):
        if images.import_archive(socket, archive, name):
            imported.append(name)
        repository = name.rsplit(":", 1)[0]
        for tag in EXAMPLE_TAGS[1:]:
            images.ctr(socket, "images", "tag", "--force", name, f"{repository}:{tag}")
    return imported
