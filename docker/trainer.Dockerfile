# syntax=docker/dockerfile:1
# The NSM trainer image: `nsm train` on CUDA, as the operator's Jobs run it.
#   make images   (or: docker buildx build -f docker/trainer.Dockerfile -t ghcr.io/nsm-dev/nsm-trainer:0.1.0 .)
# A slim Python base, not a CUDA one: PyPI's Linux torch wheel depends on NVIDIA's CUDA runtime,
# cuBLAS, cuDNN, NCCL … wheels (nvidia-*), so a CUDA+cuDNN base would ship those libraries twice.
# The GPU driver (libcuda) is not in any image: the NVIDIA container toolkit mounts the node's.
# Stage 1 builds the project's wheel and installs it with its pinned dependencies (torch,
# torch-geometric, the `operator` extra for the progress reporter and `tracking` for TensorBoard)
# into /opt/venv; stage 2 copies only that virtualenv, so no wheel, pip cache or build tool
# reaches the runtime image.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nsm/ nsm/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && set -- /dist/*.whl \
 && /opt/venv/bin/pip install --no-cache-dir "$1[operator,tracking]"

FROM ${PYTHON_IMAGE}
# The same base and path as the build stage: the virtualenv's python links to its interpreter.
COPY --from=build /opt/venv /opt/venv
# uid 1000 owns the checkpoint mount point (the PVC is mounted on /checkpoints, the spec on /etc/nsm).
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin nsm \
 && mkdir -p /checkpoints /etc/nsm \
 && chown 1000:1000 /checkpoints
# compute: CUDA; utility: nvidia-smi. The device plugin sets NVIDIA_VISIBLE_DEVICES per pod.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
WORKDIR /home/nsm
VOLUME ["/checkpoints"]
# Prometheus metrics of the running training (container port `metrics`).
EXPOSE 9400
ENTRYPOINT ["nsm"]
CMD ["train", "-f", "/etc/nsm/training.yaml", "--output-dir", "/checkpoints", "--resume", "auto", "--metrics-port", "9400"]
