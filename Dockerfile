# syntax=docker/dockerfile:1
# One image serves as the operator, the built-in migration runner and the lock sidecar:
#   lockstep operator | lockstep run ... | lockstep lock ...
#
# BASE_IMAGE: any image with Python >= 3.11 as `python3` and its venv module. The published image
# uses the pinned upstream python image below; `make image` builds FROM a Debian bookworm base
# made with debootstrap (scripts/build-image.sh), on machines with no registry for base images.
# The tag is kept for readers; the digest is what is pulled.
ARG BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- deps: Lockstep's dependencies in a venv at /opt/lockstep, from pyproject.toml alone ----------
# A code change under operator/ reuses this stage and `venv` below (scripts/build-image.sh tags
# `venv` to keep both across builds). The build backend is installed here too, so that building
# Lockstep itself needs no network. Bytecode is compiled at build time, checked by hash rather than
# mtime: the root filesystem is read-only at run time (and PYTHONDONTWRITEBYTECODE is set), so
# nothing could cache it there. Not for kubernetes.aio, an asyncio copy of the client that Lockstep
# never imports (~45 MB of bytecode).
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/lockstep
WORKDIR /src
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' \
        > /tmp/requirements.txt \
 && /opt/lockstep/bin/pip install --no-compile -r /tmp/requirements.txt \
 && /opt/lockstep/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x '/site-packages/kubernetes/aio/' /opt/lockstep/lib

# --- venv: the dependencies without pip and the build backend (not needed at run time) ----------
FROM deps AS venv
RUN /opt/lockstep/bin/pip uninstall --yes --quiet setuptools wheel pip

# --- build: Lockstep itself; its own files gathered under /lockstep-files for the final stage -----
FROM deps AS build
COPY operator ./operator
RUN /opt/lockstep/bin/pip install --no-compile --no-deps --no-build-isolation . \
 && site="$(/opt/lockstep/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && /opt/lockstep/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site/lockstep" \
 && mkdir /lockstep-files && cd / \
 && cp -a --parents "$site/lockstep" "$site"/lockstep_operator-*.dist-info \
        /opt/lockstep/bin/lockstep /opt/lockstep/bin/kubectl-lockstep /lockstep-files/

# --- final: the base, the venv, and Lockstep (two layers: a code change rebuilds the small one) ---
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="lockstep" \
      org.opencontainers.image.description="Database schema migrations, run the GitOps way on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# The upstream python images ship their standard library without bytecode; compile it once
# here (Debian's python3 already has it) instead of on every start.
RUN python3 -m compileall -q -j 0 "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    > /dev/null
COPY --from=venv /opt/lockstep /opt/lockstep
COPY --from=build /lockstep-files/ /
# HOME=/tmp: the one writable place in Lockstep's pods (an emptyDir); nothing else is written.
ENV PATH=/opt/lockstep/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LANG=C.UTF-8
# Numeric, so that runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
ENTRYPOINT ["lockstep"]
CMD ["operator"]
