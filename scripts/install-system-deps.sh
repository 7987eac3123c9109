#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only those missing.
# Safe to run again; needs root (CI and the dev machines run as root) or sudo.
#
#   bash scripts/install-system-deps.sh          everything `make test` needs
#   bash scripts/install-system-deps.sh --demo   only what `make demo` needs (no MariaDB, no toolchains)
#   bash scripts/install-system-deps.sh --image  only what `make image` needs (podman, runc, debootstrap)
#   bash scripts/install-system-deps.sh --node   also the real node (LOCKSTEP_E2E_NODE=kubelet):
#                                                containerd, runc, CNI plugins, iptables, debootstrap,
#                                                busybox-static (smoke image), gcc (pause image)
#
# Another apt (unattended-upgrades, a second checkout's install) may hold the dpkg lock: this
# script waits for it (up to LOCKSTEP_APT_LOCK_WAIT seconds, default 600) instead of failing.
set -euo pipefail

mode=all
real_node=false
for arg in "$@"; do
  case "$arg" in
    --demo | --image) mode="$arg" ;;
    --node) real_node=true ;;
    *) echo "usage: $0 [--demo|--image] [--node]" >&2; exit 2 ;;
  esac
done

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }

# The image (scripts/build-image.sh) and its smoke tests: runc because crun, podman's default,
# fails on hosts with hybrid cgroups; ip and iptables give the container its one network.
if [ "$mode" != --demo ]; then
  have podman /usr/bin/podman || need+=(podman)
  have runc /usr/sbin/runc || need+=(runc)
  have debootstrap /usr/sbin/debootstrap || need+=(debootstrap)
  have ip /usr/sbin/ip || need+=(iproute2)
  have iptables /usr/sbin/iptables || need+=(iptables)
fi
if [ "$mode" != --image ]; then
  have initdb /usr/lib/postgresql/15/bin/initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  have openssl /usr/bin/openssl || need+=(openssl)
  have unshare /usr/bin/unshare || need+=(util-linux)
fi
if [ "$mode" = all ]; then
  have mariadbd /usr/sbin/mariadbd || need+=(mariadb-server)
  # The real migration tools (tools/toolchains/install.sh) run on these: without them the
  # tool tests could not run at all, so they are installed, never skipped.
  have java /usr/bin/java || need+=(openjdk-17-jre-headless)
  have mvn /usr/bin/mvn || need+=(maven)
  have node /usr/bin/node || need+=(nodejs)
  have npm /usr/bin/npm || need+=(npm)
fi
if $real_node; then
  have containerd /usr/bin/containerd || need+=(containerd)
  have runc /usr/sbin/runc || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)  # `bridge` alone is iproute2
  have iptables /usr/sbin/iptables || need+=(iptables)
  have debootstrap /usr/sbin/debootstrap || need+=(debootstrap)
  have busybox /bin/busybox || need+=(busybox-static)
  have gcc /usr/bin/gcc || need+=(gcc libc6-dev)
fi

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
wait_limit="${LOCKSTEP_APT_LOCK_WAIT:-600}"

# apt-get with the dpkg/apt locks waited for: apt's own Lock::Timeout covers the dpkg frontend
# lock; the loop covers the lists lock of `apt-get update` and older apts.
apt() {
  local started=$SECONDS output
  while true; do
    if output=$($sudo apt-get -o DPkg::Lock::Timeout="$wait_limit" "$@" 2>&1); then
      return 0
    fi
    if grep -q "Could not get lock\|Unable to acquire the dpkg frontend lock\|is another process using it" <<<"$output" \
      && [ $((SECONDS - started)) -lt "$wait_limit" ]; then
      echo "system packages: another apt holds the lock; waiting ($((SECONDS - started)) s of ${wait_limit} s)"
      sleep 5
      continue
    fi
    echo "$output" >&2
    return 1
  done
}

echo "system packages: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt update -qq
apt install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the servers it installs where it can; the tests run their own on private ports.
for service in mariadb postgresql; do
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
echo "system packages: done"
