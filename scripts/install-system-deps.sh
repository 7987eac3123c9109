#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only those missing.
# Safe to run again; needs root (CI and the dev machines run as root) or sudo.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }

have initdb /usr/lib/postgresql/15/bin/initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
have mariadbd /usr/sbin/mariadbd || need+=(mariadb-server)
have openssl /usr/bin/openssl || need+=(openssl)
have unshare /usr/bin/unshare || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system packages: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the servers it installs where it can; the tests run their own on private ports.
for service in mariadb postgresql; do
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
echo "system packages: done"
