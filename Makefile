# volprobe — the two commands that matter: `make demo` and `make test`.
# Everything runs as root on a Debian bookworm machine with Go and Python 3.11 (see README).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KWOK_NODES ?= 3
LOCALCLUSTER := PYTHONPATH=hack $(PY) -m localcluster
# Where `make image/push/chart/release` put the image and chart: REGISTRY=host[:port][/path].
# Unset, hack/release.py uses the local cluster's registry (127.0.0.1:5001); see docs/release.md.
RELEASE := $(PY) hack/release.py $(if $(REGISTRY),--registry $(REGISTRY))

.PHONY: help deps venv build cluster cluster-down cluster-status image push chart release registry-login \
	lint unit test demo docs clean

help:
	@echo "make demo          build and start the local cluster, install volprobe, show live probe results"
	@echo "make test          install what is missing, start the cluster, run every test tier"
	@echo "make cluster       start the local cluster (KWOK_NODES=$(KWOK_NODES)); kubeconfig: .cluster/kubeconfig"
	@echo "make cluster-down  stop it and remove everything it made"
	@echo "make image         build volprobe's image (Containerfile) -> dist/image/ [REGISTRY=host[:port][/path]]"
	@echo "make push          push it to \$$REGISTRY/volprobe:<version> (default: the local cluster's registry)"
	@echo "make chart         package the chart for \$$REGISTRY and push it to oci://\$$REGISTRY/charts"
	@echo "make release       version check, wheel+sdist, image, push, chart, krew plugin, notes -> dist/"
	@echo "make lint          ruff + mypy + the package layers + versions, krew manifest, workflows"
	@echo "make unit          fast unit tests only"

deps:
	@hack/install-deps.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade 'pip>=25.1'
	@$(PY) -m pip install -q -e . --group dev
	@touch $@

venv: $(VENV)/.installed

build: deps venv
	@$(LOCALCLUSTER) build

cluster: deps venv
	@$(LOCALCLUSTER) up --kwok-nodes $(KWOK_NODES)

cluster-down: venv
	@$(LOCALCLUSTER) down

cluster-status: venv
	@$(LOCALCLUSTER) status

lint: venv
	@$(VENV)/bin/ruff check src tests hack bench
	@$(VENV)/bin/ruff format --check src tests hack bench
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports --no-cache
	@$(PY) hack/release.py lint

unit: venv
	@$(VENV)/bin/pytest -q tests/unit

test: deps venv
	@hack/test.sh

image: venv
	@$(RELEASE) image

push: venv
	@$(RELEASE) push

chart: venv
	@$(RELEASE) chart

release: venv
	@$(RELEASE) all

# For CI: $$REGISTRY_USERNAME / $$REGISTRY_PASSWORD for skopeo and helm.
registry-login: venv
	@$(RELEASE) login

demo: deps venv
	@hack/demo.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info

docs: venv
	@$(PY) hack/gendocs.py
