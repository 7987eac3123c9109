#!/usr/bin/env bash
# Build Argo CD's `argocd` multi-call binary (cmd/main.go: it runs as argocd-application-controller,
# argocd-repo-server, ... after argv[0] or ARGOCD_BINARY_NAME) from an Argo CD source tree, with
# Argo CD's own go.mod (its replace lines, its nested gitops-engine), because the module proxy
# cannot serve Argo CD to a module of ours (docs/adr/0013-argocd-is-not-built-here.md). Into
#
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/argocd/bin/argocd
#
# beside the symlinks the Argo CD image has (argocd-application-controller, argocd-repo-server,
# argocd-git-ask-pass) and the image's two wrapper scripts, and only again when the tree's commit or the Go version change. The CRDs
# (manifests/crds) and the two workloads' manifests (whose env says which ConfigMap key feeds
# which setting) are copied to manifests/ beside it, so the test bed installs what it runs.
# `go build -p 2`: the machine has 2 cores and other sessions; the cold build takes minutes.
# Usage: tools/argocd/build.sh <Argo CD source tree (a git checkout or an export)> [commit]
set -euo pipefail
src="${1:?usage: build.sh <Argo CD source tree> [commit]}"
[[ -f "$src/cmd/main.go" && -f "$src/gitops-engine/go.mod" ]] \
    || { echo "[argocd] $src is not an Argo CD source tree (no cmd/main.go, gitops-engine/go.mod)" >&2; exit 2; }
commit="${2:-$(git -C "$src" rev-parse HEAD 2>/dev/null || cat "$src/.lockstep-commit" 2>/dev/null || basename "$src")}"
bin="${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/argocd/bin"
stamp="$( { echo "$commit"; go version; } | sha256sum | cut -d' ' -f1)"
mkdir -p "$bin"
exec 9>"$bin/.lock-argocd"
flock 9  # one build at a time (two test sessions, a shell)
if [[ -x "$bin/argocd" && "$(cat "$bin/.stamp-argocd" 2>/dev/null)" == "$stamp" ]]; then
    echo "[argocd] up to date in $bin" >&2
else
    start=$SECONDS
    version="$(cat "$src/VERSION" 2>/dev/null || echo 0.0.0)"
    pkg=github.com/argoproj/argo-cd/v3/common
    ldflags="-s -w -X $pkg.version=$version -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean"
    (cd "$src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
        go build -p 2 -trimpath -ldflags "$ldflags" -o "$bin/.argocd.tmp" ./cmd) \
        >"$bin/.build-argocd.log" 2>&1 \
        || { tail -n 40 "$bin/.build-argocd.log" >&2; echo "[argocd] go build failed (log: $bin/.build-argocd.log)" >&2; exit 1; }
    mv -f "$bin/.argocd.tmp" "$bin/argocd"
    echo "$stamp" >"$bin/.stamp-argocd"
    echo "$commit" >"$bin/.source-argocd"
    echo "[argocd] built from Argo CD $commit in $((SECONDS - start)) s" >&2
fi
rm -rf "$bin/manifests" && mkdir -p "$bin/manifests"
cp "$src"/manifests/crds/*-crd.yaml \
   "$src/manifests/base/application-controller/argocd-application-controller-statefulset.yaml" \
   "$src/manifests/base/repo-server/argocd-repo-server-deployment.yaml" "$bin/manifests/"
# What the Argo CD image puts beside the binary (its Dockerfile): the repo-server runs
# git-verify-wrapper.sh on every commit it renders, signed or not.
cp "$src/hack/git-verify-wrapper.sh" "$src/hack/gpg-wrapper.sh" "$bin/"
for name in argocd-application-controller argocd-repo-server argocd-git-ask-pass; do
    ln -sfn argocd "$bin/$name"
done
echo "$bin"
