# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
RUN_DIR ?= runs/default
# The virtualenv is rebuilt when the pinned dependencies change.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: run test venv cluster-bins cluster-up cluster-down crd lint bench images clean help

help:
	@echo "make run          train the embedded default model on this machine (CPU), results in $(RUN_DIR)"
	@echo "make test         unit, operator (kmock) and e2e (local control plane) tests"
	@echo "make cluster-up   start a local control plane with fake A100 nodes (kubectl-ready)"
	@echo "make cluster-down stop it and remove its files"
	@echo "make crd          regenerate the CRD from nsm/spec.py"
	@echo "make bench        print throughput figures"
	@echo "make images       build the operator and trainer images (docker buildx; docs/images.md)"

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==25.3
	$(BIN)/python -m pip install -q -e '.[operator,modal,tracking,test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: venv
	$(BIN)/nsm train --output-dir $(RUN_DIR)

cluster-bins: venv
	bash tests/cluster/build.sh

test: venv cluster-bins
	bash hack/test-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

cluster-up: cluster-bins
	bash tests/cluster/up.sh

cluster-down:
	bash tests/cluster/down.sh

crd: venv
	$(BIN)/nsm crd --output charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml

bench: venv
	$(BIN)/python bench/throughput.py

# Images (docs/images.md): $(IMAGE_REGISTRY)/nsm-operator and nsm-trainer, tagged $(IMAGE_TAG)
# (default: the chart's appVersion, which the chart deploys). PUSH=1 pushes instead of loading
# into the local docker; several IMAGE_PLATFORMS need PUSH=1 (docker's image store holds one).
# SOURCE_DATE_EPOCH (the last commit's time) and rewrite-timestamp make rebuilds of a commit
# reproducible; the base images are pinned in the Dockerfiles (override with BUILD_ARGS, e.g.
# BUILD_ARGS="--build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:...").
IMAGE_REGISTRY ?= ghcr.io/nsm-dev
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/nsm-operator/Chart.yaml)
IMAGE_PLATFORMS ?= linux/amd64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
BUILD_ARGS ?=
IMAGE_OUTPUT = type=$(if $(filter 1 true yes,$(PUSH)),registry,docker),rewrite-timestamp=true
BUILDX = docker buildx build --platform $(IMAGE_PLATFORMS) --output $(IMAGE_OUTPUT) \
	--build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BUILD_ARGS)

images:
	$(BUILDX) -f docker/operator.Dockerfile -t $(IMAGE_REGISTRY)/nsm-operator:$(IMAGE_TAG) .
	$(BUILDX) -f docker/trainer.Dockerfile -t $(IMAGE_REGISTRY)/nsm-trainer:$(IMAGE_TAG) .

clean:
	rm -rf $(VENV) runs test-logs .pytest_cache
