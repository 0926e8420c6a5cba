# syntax=docker/dockerfile:1
# The NSM trainer image: `nsm train` on CUDA, as the operator's Jobs run it.
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/nsm-dev/nsm-trainer:0.1.0 .
# Stage 1 builds the project's wheel; stage 2 installs it (with the pinned torch and
# torch-geometric of pyproject.toml, and the `operator` extra for the in-cluster progress
# reporter's Kubernetes client) into a virtualenv on the CUDA runtime image.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nsm/ nsm/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${CUDA_IMAGE}
# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11). The CUDA runtime and cuDNN come
# from the base image; PyPI's Linux torch wheel is a CUDA 12 build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /dist/ /tmp/dist/
RUN python3 -m venv /opt/venv \
 && set -- /tmp/dist/*.whl \
 && /opt/venv/bin/pip install --no-cache-dir "$1[operator]" \
 && rm -rf /tmp/dist
# Ubuntu images ship a user `ubuntu` with uid 1000; the trainer's uid 1000 is `nsm`, owning the
# checkpoint mount point (the PVC is mounted on /checkpoints, the spec on /etc/nsm).
RUN (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin nsm \
 && mkdir -p /checkpoints /etc/nsm \
 && chown 1000:1000 /checkpoints
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /home/nsm
VOLUME ["/checkpoints"]
# Prometheus metrics of the running training (container port `metrics`).
EXPOSE 9400
ENTRYPOINT ["nsm"]
CMD ["train", "-f", "/etc/nsm/training.yaml", "--output-dir", "/checkpoints", "--resume", "auto", "--metrics-port", "9400"]
