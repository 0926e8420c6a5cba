# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
RUN_DIR ?= runs/default
# The virtualenv is rebuilt when the pinned dependencies change.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: run test venv cluster-bins cluster-up cluster-down crd lint bench clean help

help:
	@echo "make run          train the embedded default model on this machine (CPU), results in $(RUN_DIR)"
	@echo "make test         unit, operator (kmock) and e2e (local control plane) tests"
	@echo "make cluster-up   start a local control plane with fake A100 nodes (kubectl-ready)"
	@echo "make cluster-down stop it and remove its files"
	@echo "make crd          regenerate the CRD from nsm/spec.py"
	@echo "make bench        print throughput figures"

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==25.3
	$(BIN)/python -m pip install -q -e '.[operator,modal,test]'
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

clean:
	rm -rf $(VENV) runs test-logs .pytest_cache
