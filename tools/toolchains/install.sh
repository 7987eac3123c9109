#!/usr/bin/env bash
# Install the real migration tools that Lockstep's examples and tests run, from
# their package registries only (Maven Central, npm, PyPI), into a cache outside
# the repository:
#
#   ${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/toolchains/
#     flyway/bin/flyway    Flyway command line (Maven Central jars, installed JVM)
#     node/node_modules/   knex, sequelize-cli, prisma (+ pg, mysql2, driver adapters)
#     django/bin/python    a venv with Django, psycopg and PyMySQL
#
# Usage: tools/toolchains/install.sh [flyway] [node] [django]   (default: all)
#        tools/toolchains/install.sh --print-root
#
# Idempotent: each toolchain records a hash of its manifest (and of this script)
# and is skipped while both are unchanged.  A toolchain is built in a scratch
# directory and moved into place only when complete, so an interrupted run
# never leaves a half-installed tool behind.  Concurrent runs are serialised.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/toolchains"

if [[ "${1:-}" == "--print-root" ]]; then
  echo "$root"
  exit 0
fi

log() { printf '[toolchains] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stamp_of() {  # hash of the given manifests and of this script
  cat "$@" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16
}

up_to_date() {  # <dir> <stamp>
  [[ -f "$1/.lockstep-stamp" && "$(cat "$1/.lockstep-stamp")" == "$2" ]]
}

finish() {  # <scratch dir> <final dir> <stamp>
  echo "$3" >"$1/.lockstep-stamp"
  rm -rf "$2"
  mv "$1" "$2"
}

need() {  # <command> <what to install>
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install $2"
}

install_flyway() {
  local dir="$root/flyway" stamp
  stamp="$(stamp_of "$here/flyway/pom.xml")"
  if up_to_date "$dir" "$stamp"; then log "flyway: up to date ($dir)"; return; fi
  need java "a JRE 17+ (apt-get install -y openjdk-17-jre-headless)"
  need mvn "Maven (apt-get install -y maven)"
  log "flyway: resolving the command line and JDBC drivers from Maven Central"
  local scratch="$dir.tmp.$$"
  rm -rf "$scratch" && mkdir -p "$scratch/bin"
  # The local Maven repository lives in the cache too, so nothing lands in ~/.m2
  # and a version bump downloads only what changed.
  if ! mvn -q -B -f "$here/flyway/pom.xml" -Dmaven.repo.local="$root/maven-repository" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$scratch/lib" \
    >"$scratch.log" 2>&1; then
    cat "$scratch.log" >&2
    die "flyway: Maven could not resolve the Flyway jars (log above)"
  fi
  rm -f "$scratch.log"
  # A launcher instead of Flyway's own tarball (not on Maven Central): the same
  # main class, on the JVM that is installed.
  cat >"$scratch/bin/flyway" <<'LAUNCHER'
#!/bin/sh
# Flyway command line on the installed JVM (written by tools/toolchains/install.sh).
lib="$(dirname "$(readlink -f "$0")")/../lib"
# shellcheck disable=SC2086 # JAVA_OPTS is a list of options on purpose
exec "${JAVA:-java}" ${JAVA_OPTS:-} -cp "$lib/*" org.flywaydb.commandline.Main "$@"
LAUNCHER
  chmod +x "$scratch/bin/flyway"
  "$scratch/bin/flyway" -v 2>/dev/null | grep -q "Flyway" || die "flyway: the assembled command line does not start"
  finish "$scratch" "$dir" "$stamp"
  log "flyway: installed ($dir/bin/flyway)"
}

install_node() {
  local dir="$root/node" stamp
  stamp="$(stamp_of "$here/node/package.json" "$here/node/package-lock.json")"
  if up_to_date "$dir" "$stamp"; then log "node: up to date ($dir)"; return; fi
  need node "Node.js 20+"
  need npm "npm"
  log "node: installing knex, sequelize-cli and prisma from npm"
  local scratch="$dir.tmp.$$"
  rm -rf "$scratch" && mkdir -p "$scratch"
  cp "$here/node/package.json" "$here/node/package-lock.json" "$scratch/"
  # --ignore-scripts: Prisma's install scripts download native engines from a
  # CDN that is not reachable; the examples use its WebAssembly schema engine.
  (cd "$scratch" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  for tool in knex sequelize-cli prisma; do
    [[ -x "$scratch/node_modules/.bin/$tool" ]] || die "node: $tool missing after npm ci"
  done
  finish "$scratch" "$dir" "$stamp"
  log "node: installed ($dir/node_modules/.bin)"
}

install_django() {
  local dir="$root/django" stamp python="${PYTHON:-python3}"
  stamp="$(stamp_of "$here/django/requirements.txt")"
  if up_to_date "$dir" "$stamp"; then log "django: up to date ($dir)"; return; fi
  need "$python" "Python 3.10+"
  log "django: creating a venv and installing Django from PyPI"
  # Built in place (a venv's scripts hard-code its path, so it cannot be moved);
  # the stamp, written last, is what marks it complete.
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$here/django/requirements.txt"
  echo "$stamp" >"$dir/.lockstep-stamp"
  log "django: installed ($dir/bin/python, Django $("$dir/bin/python" -m django --version))"
}

main() {
  local wanted=("$@")
  [[ ${#wanted[@]} -gt 0 ]] || wanted=(flyway node django)
  mkdir -p "$root"
  exec 9>"$root/.install.lock"
  flock 9
  local started=$SECONDS
  for name in "${wanted[@]}"; do
    case "$name" in
      flyway) install_flyway ;;
      node) install_node ;;
      django) install_django ;;
      *) die "unknown toolchain '$name' (known: flyway node django)" ;;
    esac
  done
  log "done in $((SECONDS - started))s; cache: $root ($(du -sh "$root" 2>/dev/null | cut -f1))"
}

main "$@"
