#!/usr/bin/env bash
# Build argocd-health (main.go here) inside an Argo CD source tree, with Argo CD's own go.mod
# (its replace lines, its nested gitops-engine), because the module proxy cannot serve Argo CD's
# Lua package to a module of ours (docs/adr/0013-argocd-is-not-built-here.md). The binary goes to
#
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/argocd/bin/argocd-health
#
# and is rebuilt only when the source tree's commit, main.go or the Go version change.
# Usage: tools/argocd-health/build.sh <Argo CD source tree (a git checkout or export)> [commit]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:?usage: build.sh <Argo CD source tree> [commit]}"
commit="${2:-$(git -C "$src" rev-parse HEAD 2>/dev/null || basename "$src")}"
bin="${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/argocd/bin"
stamp="$( { echo "$commit"; go version; sha256sum "$HERE/main.go"; } | sha256sum | cut -d' ' -f1)"
mkdir -p "$bin"
if [[ -x "$bin/argocd-health" && "$(cat "$bin/.stamp-argocd-health" 2>/dev/null)" == "$stamp" ]]; then
    echo "[argocd-health] up to date in $bin" >&2
else
    mkdir -p "$src/hack/lockstep-argocd-health"
    cp "$HERE/main.go" "$src/hack/lockstep-argocd-health/main.go"
    start=$SECONDS
    (cd "$src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
        go build -trimpath -ldflags "-s -w" -o "$bin/argocd-health" ./hack/lockstep-argocd-health)
    echo "$stamp" >"$bin/.stamp-argocd-health"
    echo "$commit" >"$bin/.source-argocd-health"
    echo "[argocd-health] built from Argo CD $commit in $((SECONDS - start)) s" >&2
fi
echo "$bin/argocd-health"
