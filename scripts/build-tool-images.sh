#!/usr/bin/env bash
# Builds the images that run real migration tools on the test bed's real node, without a registry:
# one per tools/images/<example>.Containerfile (today flyway-postgresql), FROM the debootstrap base
# of scripts/build-image.sh (same podman storage and runtime settings), with the example's own
# files, saved as an OCI archive the real node imports as docker.io/lockstep-examples/<example>:1
# (the image the example's migration.yaml names):
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/image/examples/<example>.oci.tar, <example>.stamp
# A warm run (same Containerfile, tool, example files and base) builds nothing.
#
#   bash scripts/build-tool-images.sh [EXAMPLE...]     (default: every tools/images/*.Containerfile)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/image"
out="$cache/examples"
base_image="localhost/lockstep-base:bookworm"
tag="1"  # the tag in the examples' migration.yaml

log() { echo "tool-images: $*" >&2; }
podman() { bash "$repo/scripts/build-image.sh" podman "$@"; }

# The tool each example needs, installed into the toolchain cache (idempotent, seconds when warm).
toolchain_of() {
  case "$1" in
    flyway-*) echo flyway ;;
    *) log "no toolchain known for $1"; exit 2 ;;
  esac
}

# The files of the example its Dockerfile copies (COPY ... ./).
app_files_of() {
  case "$1" in
    flyway-*) echo "flyway.toml migrations" ;;
  esac
}

build_one() {
  local example="$1" started=$SECONDS
  local containerfile="$repo/tools/images/$example.Containerfile"
  local name="docker.io/lockstep-examples/$example:$tag"
  local archive="$out/$example.oci.tar" stamp="$out/$example.stamp"
  [ -f "$containerfile" ] || { log "no $containerfile"; exit 2; }
  local tool root context
  tool="$(toolchain_of "$example")"
  bash "$repo/tools/toolchains/install.sh" "$tool" >&2
  root="$(bash "$repo/tools/toolchains/install.sh" --print-root)"
  context="$(mktemp -d "$out/context.XXXXXX")"
  trap 'rm -rf "$context"' RETURN
  cp -a "$root/$tool" "$context/$tool"
  mkdir "$context/app"
  # What the example's Dockerfile copies into /app.
  local file
  for file in $(app_files_of "$example"); do
    cp -a "$repo/examples/$example/$file" "$context/app/"
  done
  local base_id hash
  base_id="$(podman image inspect --format '{{.Id}}' "$base_image")"
  hash="$({ echo "base $base_id"; cat "$containerfile";
    (cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -d' ' -f1)"
  if [ -f "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ] && podman image exists "$name"; then
    log "$name up to date (inputs $hash)"
    return
  fi
  log "building $name FROM $base_image"
  podman build --network host --build-arg "BASE_IMAGE=$base_image" --file "$containerfile" \
    --tag "$name" "$context" >"$out/$example.build.log" 2>&1 \
    || { tail -30 "$out/$example.build.log" >&2; exit 1; }
  rm -f "$archive.partial"
  podman save --quiet --format oci-archive --output "$archive.partial" "$name" >/dev/null
  mv "$archive.partial" "$archive"
  echo "$hash" >"$stamp"
  podman image prune --force >/dev/null
  log "$name built in $((SECONDS - started)) s: $(podman image inspect --format '{{.Size}}' "$name") bytes, archive $(stat -c %s "$archive") bytes"
}

mkdir -p "$out"
exec 9>"$out/build.lock"
flock 9
if ! podman image exists "$base_image"; then
  bash "$repo/scripts/build-image.sh"  # makes the base (and the Lockstep image)
fi
examples=("$@")
if [ ${#examples[@]} -eq 0 ]; then
  for file in "$repo"/tools/images/*.Containerfile; do
    examples+=("$(basename "$file" .Containerfile)")
  done
fi
for example in "${examples[@]}"; do
  build_one "$example"
done
