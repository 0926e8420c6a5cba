# syntax=docker/dockerfile:1
# The nsm-operator image: the kopf operator on a slim Python runtime.
#   make images   (or: docker buildx build -f docker/operator.Dockerfile -t ghcr.io/nsm-dev/nsm-operator:0.1.0 .)
# Stage 1 builds the project's wheel and a virtualenv with only what the operator imports (no
# torch: the operator uses nsm.spec, never the model); stage 2 copies that virtualenv.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nsm/ nsm/
COPY operator/ operator/
COPY docker/operator-requirements.txt /tmp/operator-requirements.txt
# --no-deps: the distribution's own dependencies include torch; the operator's runtime
# dependencies are pinned in operator-requirements.txt (a test keeps them equal to pyproject.toml).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /dist/*.whl \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/operator-requirements.txt

FROM ${PYTHON_IMAGE}
# The same path as in the build stage: the virtualenv's scripts point at /opt/venv/bin/python.
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nsm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric user, so the kubelet can verify runAsNonRoot.
USER 1000:1000
WORKDIR /tmp
# 8080: Prometheus metrics (/metrics), 8081: liveness (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["nsm-operator"]
CMD ["--liveness=http://0.0.0.0:8081/healthz"]
