#!/usr/bin/env bash
# Builds the Lockstep image from the Dockerfile on a machine with no Docker daemon and no
# registry for base images, and saves it as an OCI archive for `ctr images import`.
#
#   bash scripts/build-image.sh            base (once), image (when its inputs change), archive
#   bash scripts/build-image.sh podman ... podman with this script's storage and runtime settings
#   bash scripts/build-image.sh env        the settings as shell variables (for tests and helpers)
#
# The base is Debian bookworm made with debootstrap (python3, python3-venv, ca-certificates),
# imported as localhost/lockstep-base:bookworm; the Dockerfile's BASE_IMAGE argument selects it.
# The published build keeps the Dockerfile's default, the pinned upstream python image.
#
# podman runs with runc and cgroupfs (crun fails on these hosts' hybrid cgroups), with its
# storage (overlay, else vfs) under the cache, never in /tmp or the repo:
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/image/   storage-<driver>/, run-<driver>/, containers.conf,
#       storage.conf, base.stamp, lockstep-dev.stamp, lockstep-dev.oci.tar
# LOCKSTEP_IMAGE_BASE=<image> builds FROM another base (e.g. the upstream one, where a registry
# is reachable) instead of the debootstrap one. LOCKSTEP_IMAGE_FORCE=1 rebuilds even if the
# inputs did not change. LOCKSTEP_BUILD_CA_BUNDLE (default: the host's bundle) is what the build's
# RUN steps trust.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/image"
image="${LOCKSTEP_IMAGE:-localhost/lockstep:dev}"
base_image="localhost/lockstep-base:bookworm"
venv_image="localhost/lockstep-venv:cache"
archive="$cache/lockstep-dev.oci.tar"
suite="bookworm"
mirror="${LOCKSTEP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${LOCKSTEP_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
base_packages="python3,python3-venv,ca-certificates"
# Recorded in base.stamp: a change here rebuilds the base.
base_recipe="debootstrap --variant=minbase --include=$base_packages $suite $mirror; trim v1"

# overlay where the kernel has it (a container starts in <1 s; vfs copies the whole image for
# each container, ~5 s here); LOCKSTEP_PODMAN_STORAGE_DRIVER=vfs where overlay cannot mount.
driver="${LOCKSTEP_PODMAN_STORAGE_DRIVER:-$(grep -qw overlay /proc/filesystems && echo overlay || echo vfs)}"
export CONTAINERS_CONF="$cache/containers.conf"
export CONTAINERS_STORAGE_CONF="$cache/storage.conf"

log() { echo "image: $*" >&2; }

write_settings() {
  mkdir -p "$cache/storage-$driver" "$cache/run-$driver"
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$driver"
graphroot = "$cache/storage-$driver"
runroot = "$cache/run-$driver"
EOF
  # podman's default rlimits exceed what this kind of host lets a container set (EPERM).
  cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

install_tools() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  command -v runc >/dev/null 2>&1 || need+=(runc)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
  [ ${#need[@]} -eq 0 ] || bash "$repo/scripts/install-system-deps.sh" --image
}

# Inputs of the image: what the Dockerfile copies, the Dockerfile itself, and the base's id.
inputs_hash() {
  local base_id="$1"
  {
    echo "base $base_id"
    echo "image $image"
    cd "$repo"
    find Dockerfile .dockerignore pyproject.toml README.md operator -type f \
      -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}

build_base() {
  if [ -f "$cache/base.stamp" ] && [ "$(cat "$cache/base.stamp")" = "$base_recipe" ] \
    && podman image exists "$base_image"; then
    log "base $base_image up to date"
    return
  fi
  local rootfs="$cache/base-rootfs" started=$SECONDS
  rm -rf "$rootfs"
  log "debootstrap $suite into $rootfs ($base_packages)"
  debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # What the slim upstream images leave out too: docs, man pages, translations, apt's caches.
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  tar --numeric-owner -C "$rootfs" -c . \
    | podman import --change 'CMD ["python3"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
  echo "$base_recipe" >"$cache/base.stamp"
  log "base $base_image built in $((SECONDS - started)) s"
}

build_image() {
  local base="${LOCKSTEP_IMAGE_BASE:-$base_image}" base_id hash started=$SECONDS
  base_id="$(podman image inspect --format '{{.Id}}' "$base")"
  hash="$(inputs_hash "$base_id")"
  if [ "${LOCKSTEP_IMAGE_FORCE:-0}" != 1 ] && [ -f "$archive" ] \
    && [ "$(cat "$cache/lockstep-dev.stamp" 2>/dev/null)" = "$hash" ] \
    && podman image exists "$image"; then
    log "$image up to date (inputs $hash)"
    return
  fi
  # The build's RUN steps trust what this host trusts (pip included), e.g. an egress proxy's CA;
  # mounted for the build only, never copied into the image.
  local trust=()
  if [ -s "$ca_bundle" ]; then
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$cache/pip.conf"
    trust=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro"
      --volume "$cache/pip.conf:/etc/pip.conf:ro")
  fi
  log "building $image FROM $base"
  local build=(podman build --network host "${trust[@]}" --build-arg "BASE_IMAGE=$base"
    --file "$repo/Dockerfile")
  # The venv stage (and the deps stage under it) is tagged, so that pruning keeps them.
  { "${build[@]}" --target venv --tag "$venv_image" "$repo" \
    && "${build[@]}" --tag "$image" "$repo"; } >"$cache/build.log" 2>&1 \
    || { tail -30 "$cache/build.log" >&2; exit 1; }
  # Drop earlier builds' images and build-stage layers (vfs keeps each as a full copy).
  podman image prune --force >/dev/null
  log "saving $archive"
  # Written aside and renamed: a reader (ctr images import) never sees half an archive.
  rm -f "$archive.partial"
  podman save --quiet --format oci-archive --output "$archive.partial" "$image" >/dev/null
  mv "$archive.partial" "$archive"
  echo "$hash" >"$cache/lockstep-dev.stamp"
  log "$image built in $((SECONDS - started)) s: $(podman image inspect --format '{{.Size}}' "$image") bytes, archive $(stat -c %s "$archive") bytes"
}

write_settings
case "${1:-build}" in
  build)
    # One build at a time per cache (two test sessions may ask at once); the second finds it done.
    exec 9>"$cache/build.lock"
    flock 9
    install_tools
    build_base
    build_image
    ;;
  podman)
    shift
    exec podman "$@"
    ;;
  env)
    printf 'CONTAINERS_CONF=%q\nCONTAINERS_STORAGE_CONF=%q\nLOCKSTEP_IMAGE=%q\nLOCKSTEP_IMAGE_ARCHIVE=%q\n' \
      "$CONTAINERS_CONF" "$CONTAINERS_STORAGE_CONF" "$image" "$archive"
    ;;
  *)
    echo "usage: $0 [build|podman ARGS...|env]" >&2
    exit 2
    ;;
esac
