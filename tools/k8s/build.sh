#!/usr/bin/env bash
# Build the e2e control plane binaries from the Go wrapper modules beside this
# script, into a cache outside the repository:
#
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/k8s/<kubernetes version>/bin/
#
# Usage: tools/k8s/build.sh [--bin-dir] [MODULE...]
#   MODULE      kubernetes (kube-apiserver, kube-controller-manager, kubectl, and
#               for the real node mode kube-scheduler, kube-proxy, kubelet),
#               etcd, helm, promtool, krew (krew, validate-krew-manifest),
#               kstatus (Lockstep's kstatus checker, whose module is tools/kstatus).
#               Default: all of these. Built only when named (the opt-in Flux e2e tests):
#               source-controller and kustomize-controller (Flux; ~16 min cold on 2 cores),
#               kustomize (the CLI Argo CD's repo-server runs; tools/testbed/argocd.py).
#   --bin-dir   print the binary directory and exit (builds nothing).
#
# A module is rebuilt only when its stamp (a hash of its go.mod, go.sum, Go
# sources, link flags and the Go version) changes. Go's own module and
# build caches (GOMODCACHE, GOCACHE) keep their defaults, outside the repo.
# Needs only Go (>= 1.25) on PATH or at /usr/local/go/bin/go.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL_MODULES=(kubernetes etcd helm promtool kstatus krew)
OPTIONAL_MODULES=(source-controller kustomize-controller kustomize)

log() { printf '[k8s-build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_go() {
    if [[ -n "${GO:-}" ]]; then echo "$GO"
    elif command -v go >/dev/null 2>&1; then command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
    else die "Go not found: install Go >= 1.25 or set GO=/path/to/go"
    fi
}

# The version of a required module, read from a wrapper's go.mod.
required_version() {  # <go.mod> <module path>
    awk -v mod="$2" '$1 == mod && $2 ~ /^v/ {print $2; exit}
                     $1 == "require" && $2 == mod {print $3; exit}' "$1"
}

kube_version() { required_version "$HERE/kubernetes/go.mod" k8s.io/kubernetes; }

bin_dir() {
    echo "${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/k8s/$(kube_version)/bin"
}

# Where a module's go.mod lives: beside this script, except Lockstep's own tools.
module_dir() {
    case "$1" in
        kstatus) echo "$(dirname "$HERE")/kstatus" ;;
        *) echo "$HERE/$1" ;;
    esac
}

# Binaries a module produces, as "<name>=<package>" pairs.
module_targets() {
    case "$1" in
        kubernetes) echo "kube-apiserver=./cmd/kube-apiserver" \
                         "kube-controller-manager=./cmd/kube-controller-manager" \
                         "kubectl=./cmd/kubectl" \
                         "kube-scheduler=./cmd/kube-scheduler" \
                         "kube-proxy=./cmd/kube-proxy" \
                         "kubelet=./cmd/kubelet" ;;
        etcd) echo "etcd=." ;;
        helm) echo "helm=helm.sh/helm/v3/cmd/helm" ;;
        promtool) echo "promtool=github.com/prometheus/prometheus/cmd/promtool" ;;
        kstatus) echo "kstatus=." ;;
        krew) echo "validate-krew-manifest=sigs.k8s.io/krew/cmd/validate-krew-manifest" \
                   "kubectl-krew=sigs.k8s.io/krew/cmd/krew" ;;
        source-controller) echo "source-controller=github.com/fluxcd/source-controller" ;;
        kustomize-controller) echo "kustomize-controller=github.com/fluxcd/kustomize-controller" ;;
        kustomize) echo "kustomize=sigs.k8s.io/kustomize/kustomize/v5" ;;
    esac
}

# -X flags that make the binaries report their real version (kubectl version,
# /version, Helm's .Capabilities.KubeVersion); without them they claim v0.0.0.
module_ldflags() {
    local flags="-s -w"
    case "$1" in
        kubernetes)
            local v major minor pkg
            v="$(kube_version)"
            major="${v#v}"; major="${major%%.*}"
            minor="${v#v*.}"; minor="${minor%%.*}"
            for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
                flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major"
                flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
                flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
            done ;;
        etcd) ;;  # etcd's version is a constant in go.etcd.io/etcd/api/v3/version
        helm)  # as Helm's Makefile: its version, and the client-go minor as default KubeVersion
            local v client_go
            v="$(required_version "$HERE/helm/go.mod" helm.sh/helm/v3)"
            client_go="$(required_version "$HERE/helm/go.mod" k8s.io/client-go)"
            client_go="${client_go#v0.}"
            flags+=" -X helm.sh/helm/v3/internal/version.version=$v"
            flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
            for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
                flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${client_go%%.*}"
            done ;;
        promtool)  # module v0.3MM.P is Prometheus 3.MM.P
            local v pkg=github.com/prometheus/common/version
            v="$(required_version "$HERE/promtool/go.mod" github.com/prometheus/prometheus)"
            v="${v#v0.3}"; v="3.${v#0}"
            flags+=" -X $pkg.Version=$v -X $pkg.Branch=HEAD -X $pkg.BuildDate=19700101-00:00:00" ;;
        kustomize)  # `kustomize version` prints it; Argo CD's repo-server logs and caches it
            local v
            v="$(required_version "$HERE/kustomize/go.mod" sigs.k8s.io/kustomize/kustomize/v5)"
            flags+=" -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$v" ;;
    esac
    echo "$flags"
}

module_stamp() {  # <module> <go binary>
    {
        "$2" version
        module_ldflags "$1"
        (cd "$(module_dir "$1")" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort \
            | xargs sha256sum)
    } | sha256sum | cut -d' ' -f1
}

module_is_current() {  # <module> <bin dir> <stamp>
    local stamp_file="$2/.stamp-$1" target
    [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$3" ]] || return 1
    for target in $(module_targets "$1"); do
        [[ -x "$2/${target%%=*}" ]] || return 1
    done
}

go_build() {  # <module> <name> <package> <bin dir> <go binary> <ldflags> <start>
    # Go's own output (hundreds of "go: downloading" lines, then silence while it compiles) goes
    # to a log; one progress line every 30 s says the build is alive; a failure shows the log tail.
    local module="$1" name="$2" pkg="$3" bin="$4" go="$5" ldflags="$6" start="$7" pid next=30
    local build_log="$bin/.build-$name.log"
    (cd "$(module_dir "$module")" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
        exec "$go" build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg") >"$build_log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if (( SECONDS - start >= next )); then
            log "$module: still building $name ($((SECONDS - start)) s, $(grep -c '^go: downloading' "$build_log") modules downloaded)"
            next=$((next + 30))
        fi
    done
    if ! wait "$pid"; then
        tail -n 40 "$build_log" >&2
        die "$module: go build of $name failed (whole log: $build_log)"
    fi
}

build_module() {  # <module> <bin dir> <go binary>
    local module="$1" bin="$2" go="$3" stamp target name pkg start ldflags
    stamp="$(module_stamp "$module" "$go")"
    if module_is_current "$module" "$bin" "$stamp"; then
        log "$module: up to date in $bin"
        return
    fi
    ldflags="$(module_ldflags "$module")"
    for target in $(module_targets "$module"); do
        name="${target%%=*}"; pkg="${target#*=}"
        log "$module: building $name ..."
        start=$SECONDS
        go_build "$module" "$name" "$pkg" "$bin" "$go" "$ldflags" "$start"
        mv -f "$bin/.$name.tmp" "$bin/$name"
        log "$module: built $name in $((SECONDS - start)) s"
    done
    echo "$stamp" >"$bin/.stamp-$module"
}

main() {
    local modules=() go bin module start=$SECONDS
    for arg in "$@"; do
        case "$arg" in
            --bin-dir) bin_dir; return ;;
            -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return ;;
            -*) die "unknown option: $arg" ;;
            *) [[ " ${ALL_MODULES[*]} ${OPTIONAL_MODULES[*]} " == *" $arg "* ]] \
                   || die "unknown module: $arg (known: ${ALL_MODULES[*]} ${OPTIONAL_MODULES[*]})"
               modules+=("$arg") ;;
        esac
    done
    [[ ${#modules[@]} -gt 0 ]] || modules=("${ALL_MODULES[@]}")
    go="$(find_go)"
    bin="$(bin_dir)"
    mkdir -p "$bin"
    exec 9>"$bin/.lock"
    flock 9  # one build at a time per cache (parallel test workers, two shells)
    log "Kubernetes $(kube_version), $("$go" version | cut -d' ' -f3), into $bin"
    for module in "${modules[@]}"; do
        build_module "$module" "$bin" "$go"
    done
    log "done in $((SECONDS - start)) s"
    echo "$bin"
}

main "$@"; exit
