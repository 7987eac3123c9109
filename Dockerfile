# syntax=docker/dockerfile:1
# One image serves as the operator, the built-in migration runner and the lock sidecar:
#   lockstep operator | lockstep run ... | lockstep lock ...

# --- build: wheels for Lockstep and every dependency ------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- final: the wheels installed, nothing else -------------------------------------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="lockstep" \
      org.opencontainers.image.description="Database schema migrations, run the GitOps way on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels lockstep-operator
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Numeric, so that runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
ENTRYPOINT ["lockstep"]
CMD ["operator"]
