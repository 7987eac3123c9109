"""The real node's pure parts: the OCI archives it imports into containerd, the iptables fence
that keeps pod traffic on the machine, and the kubelet settings that keep its API private."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

from testbed.node import config, host, images
from testbed.node.paths import NodeLayout


def read_archive(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def test_oci_archive_is_content_addressed_and_named(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        (tmp_path / "hello").write_text("hi\n")
        tar.add(tmp_path / "hello", arcname="hello")
    archive = tmp_path / "image.oci.tar"
    images.write_oci_archive(archive, "localhost/x:dev", [layer], ["/hello"], ["a"])

    files = read_archive(archive)
    for name, content in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(content).hexdigest() == name.rsplit("/", 1)[1]
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/x:dev"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    image_config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    layer_digest = hashlib.sha256(layer.read_bytes()).hexdigest()
    assert image_config["rootfs"]["diff_ids"] == [f"sha256:{layer_digest}"]
    assert [d["digest"] for d in manifest["layers"]] == [f"sha256:{layer_digest}"]
    assert image_config["config"]["Entrypoint"] == ["/hello"]


def test_fence_drops_forwarding_both_ways_and_guards_node_ports_off_loopback() -> None:
    rules = host.fence_rules(api_port=6443, kubelet_port=10250)
    assert ["-i", host.BRIDGE, "!", "-o", host.BRIDGE, "-j", "DROP"] in rules["FORWARD"]
    assert ["!", "-i", host.BRIDGE, "-o", host.BRIDGE, "-j", "DROP"] in rules["FORWARD"]
    guarded = {rule[3] for rule in rules["INPUT"] if "--dport" in rule}
    assert guarded == {"6443", "10250"}
    for rule in rules["INPUT"]:  # loopback and the bridge are never dropped
        text = " ".join(rule)
        assert text.endswith("-j DROP")
        assert f"! -i lo ! -i {host.BRIDGE}" in text


def test_kubelet_listens_only_on_the_bridge_and_leaves_kernel_defaults(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    settings = json.loads(config.kubelet_config(layout, port=10250, healthz_port=10248))
    assert settings["address"] == host.GATEWAY  # anonymous + AlwaysAllow: never on 0.0.0.0
    assert settings["healthzBindAddress"] == "127.0.0.1"
    assert settings["readOnlyPort"] == 0
    assert settings["containerRuntimeEndpoint"] == f"unix://{layout.containerd_socket}"
    assert settings["podLogsDir"].startswith(str(tmp_path))


def test_pod_network_has_no_masquerade_and_private_ipam(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    (bridge,) = json.loads(config.cni_conflist(layout))["plugins"]
    assert (bridge["bridge"], bridge["ipMasq"], bridge["isGateway"]) == (host.BRIDGE, False, True)
    assert bridge["ipam"]["dataDir"] == str(layout.cni_ipam_dir)
    assert bridge["ipam"]["ranges"] == [[{"subnet": host.POD_CIDR, "gateway": host.GATEWAY}]]
