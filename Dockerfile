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
# A stage of its own, so that a change under operator/ reuses it (scripts/build-image.sh tags it
# to keep it across builds).
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/lockstep
WORKDIR /src
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && /opt/lockstep/bin/pip install --no-compile -r /tmp/requirements.txt

# --- build: Lockstep itself into the venv ---------------------------------------------------------
FROM deps AS build
COPY operator ./operator
# Bytecode is compiled here, checked by hash rather than mtime: the root filesystem is read-only
# at run time (and PYTHONDONTWRITEBYTECODE is set), so nothing could cache it there. Not for
# kubernetes.aio, an asyncio copy of the client Lockstep never imports (~45 MB of bytecode).
# pip and setuptools (the venv's own) are not needed at run time.
RUN /opt/lockstep/bin/pip install --no-compile --no-deps . \
 && /opt/lockstep/bin/pip uninstall --yes --quiet setuptools pip \
 && /opt/lockstep/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -x '/site-packages/kubernetes/aio/' /opt/lockstep/lib

# --- final: the base and the venv, nothing else -------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="lockstep" \
      org.opencontainers.image.description="Database schema migrations, run the GitOps way on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# The upstream python images ship their standard library without bytecode; compile it once
# here (Debian's python3 already has it) instead of on every start.
RUN python3 -m compileall -q -j 0 "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    > /dev/null
COPY --from=build /opt/lockstep /opt/lockstep
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
