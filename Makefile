# Lockstep — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PYTHONPATH := tools

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install Lockstep with its dev tools

.PHONY: system-deps
system-deps: ## Install the Debian packages tests need (PostgreSQL, MariaDB, openssl, JDK, Maven, Node.js)
	bash scripts/install-system-deps.sh

.PHONY: lint
lint: install ## ruff (lint + format check) and import-linter contracts
	$(BIN)/ruff check operator tests tools bench
	$(BIN)/ruff format --check operator tests tools bench
	$(BIN)/lint-imports

.PHONY: format
format: install ## Format the code with ruff
	$(BIN)/ruff format operator tests tools bench
	$(BIN)/ruff check --fix operator tests tools bench

.PHONY: typecheck
typecheck: install ## mypy --strict on the package
	$(BIN)/mypy

.PHONY: test-unit
test-unit: install ## Unit tests (pure, seconds)
	$(BIN)/pytest tests/unit -q

.PHONY: test-integration
test-integration: install system-deps ## Integration tests against real PostgreSQL, MariaDB, SQLite
	$(BIN)/pytest tests/integration -q -m integration

.PHONY: test-faults
test-faults: install system-deps ## Kill migration runs mid-file (PostgreSQL, MariaDB; SQL, Alembic, Knex): KILLS=100 per engine for SQL, TOOL_KILLS=20
	LOCKSTEP_FAULT_KILLS=$(or $(KILLS),100) LOCKSTEP_FAULT_TOOL_KILLS=$(or $(TOOL_KILLS),20) \
		$(BIN)/pytest tests/integration/test_fault_injection.py -q -s -m integration -p no:randomly

.PHONY: test-e2e
test-e2e: install system-deps k8s-bin ## End-to-end tests on a real control plane (or the cluster in KUBECONFIG)
	$(BIN)/pytest tests/e2e -q -m e2e

.PHONY: image
image: ## Build the image localhost/lockstep:dev with podman (no registry needed) and its OCI archive
	bash scripts/build-image.sh

.PHONY: image-smoke
image-smoke: install image k8s-bin ## Run the image as a cluster would (read-only, user 65532, only the DB and API reachable)
	$(BIN)/pytest tests/image -q -m image

.PHONY: test-e2e-node
test-e2e-node: install system-deps k8s-bin ## E2E on the real node (kubelet, containerd, kube-proxy; root): the smoke tests and the operator's Jobs
	bash scripts/install-system-deps.sh --node
	LOCKSTEP_E2E_NODE=kubelet $(BIN)/pytest tests/e2e/test_real_node.py tests/e2e/test_migrations.py -q -m e2e

# The real-node phase of `make test`: the e2e tests that most depend on what only real
# containers under a real kubelet do (restricted security contexts, native sidecars, signals,
# kube-proxy, pod networking), in the image of `make image` and a Flyway image built here.
REAL_NODE_TESTS := \
	tests/e2e/test_real_node.py \
	tests/e2e/test_migrations.py::test_quickstart_goes_ready_through_a_real_job \
	'tests/e2e/test_tools.py::test_example_migrates_to_head_then_rolls_back_one_step[flyway-postgresql]' \
	tests/e2e/test_gate.py::test_new_pods_wait_for_the_migration_and_are_released_when_it_succeeds \
	tests/e2e/test_gate.py::test_contract_runs_only_after_the_rollout_completes \
	tests/e2e/test_chart_install.py \
	tests/e2e/test_chaos.py::test_killed_leader_is_replaced_and_the_running_job_adopted_and_applied_once \
	tests/e2e/test_chaos.py::test_deleted_migration_pod_never_overlaps_its_retry_and_converges

.PHONY: test
test: lint typecheck system-deps k8s-bin image tool-images ## Everything: lint, types, unit, integration, e2e (fast mode), image smoke tests, then the real-node phase
	$(BIN)/pytest tests -q; fast=$$?; \
	$(MAKE) --no-print-directory test-real-node; real=$$?; \
	echo "make test: fast mode (pod agent) exit $$fast, real-node phase exit $$real"; \
	exit $$(( fast || real ))

.PHONY: tool-images
tool-images: image ## Build the images with real migration tools for the real node (Flyway; no registry, cached)
	bash scripts/build-tool-images.sh

.PHONY: test-real-node
test-real-node: install system-deps k8s-bin image tool-images ## The real-node phase of `make test` (root): quickstart, Flyway, gate, Helm install, chaos on a real kubelet; stops the node after
	@if [ "$$(id -u)" != 0 ]; then \
		echo "test-real-node: NOT RUN: the real node needs root (containerd, iptables, mounts)"; exit 0; fi; \
	bash scripts/install-system-deps.sh --node && \
	LOCKSTEP_E2E_NODE=kubelet $(BIN)/pytest $(REAL_NODE_TESTS) -q -m e2e; status=$$?; \
	LOCKSTEP_E2E_NODE=kubelet $(PY) -m testbed.cluster down; \
	exit $$status

.PHONY: demo
demo: install ## The quickstart on a real control plane + operator + PostgreSQL, left running
	bash scripts/install-system-deps.sh --demo
	$(PY) -m testbed.demo up

.PHONY: demo-down
demo-down: install ## Stop everything `make demo` started
	$(PY) -m testbed.demo down

.PHONY: demo-local
demo-local: install ## The quickstart without a cluster (SQLite), twice: the second run changes nothing
	$(BIN)/lockstep apply -f examples/quickstart/migration.yaml
	$(BIN)/lockstep apply -f examples/quickstart/migration.yaml

.PHONY: k8s-bin
k8s-bin: ## Build etcd, kube-apiserver, kube-controller-manager, kubectl, kubelet, kube-proxy, kube-scheduler, helm, promtool, kstatus (cached)
	bash tools/k8s/build.sh kubernetes etcd helm promtool kstatus

.PHONY: cluster-up
cluster-up: install k8s-bin ## Start the local control plane (etcd + apiserver + controller-manager)
	$(PY) -m testbed.cluster up

.PHONY: cluster-down
cluster-down: install ## Stop the local control plane and delete its state
	$(PY) -m testbed.cluster down

.PHONY: kubeconfig
kubeconfig: install ## Print the local control plane's kubeconfig path
	@$(PY) -m testbed.cluster kubeconfig

.PHONY: test-flux
test-flux: install system-deps k8s-bin ## Flux e2e (opt-in): real source-/kustomize-controller sync a git repo; first run builds them (~16 min)
	bash tools/k8s/build.sh source-controller kustomize-controller
	LOCKSTEP_E2E_FLUX=1 $(BIN)/pytest tests/e2e/test_flux.py -q -m flux

.PHONY: test-argocd
test-argocd: install system-deps k8s-bin ## Argo CD e2e (opt-in): its real application controller syncs a git repo; needs ARGOCD_SRC=<Argo CD source tree>
	@test -n "$(ARGOCD_SRC)" || { echo "make test-argocd ARGOCD_SRC=<Argo CD source tree> (docs/gitops.md)"; exit 2; }
	command -v redis-server >/dev/null || apt-get install -y redis-server
	bash tools/argocd/build.sh "$(ARGOCD_SRC)"
	bash tools/k8s/build.sh kustomize
	LOCKSTEP_E2E_ARGOCD=1 ARGOCD_SRC="$(ARGOCD_SRC)" $(BIN)/pytest tests/e2e/test_argocd.py -q -m argocd

.PHONY: bench
bench: install system-deps k8s-bin ## Benchmarks, quick (< 5 min): latency, API cost, scale, runner, gate vs their floors; bench/results/bench.json
	$(PY) bench/run.py --quick

.PHONY: bench-full
bench-full: install system-deps k8s-bin ## The full benchmarks behind docs/performance.md (about 35 min); bench/results/bench-full.json
	$(PY) bench/run.py

.PHONY: bench-failover
bench-failover: install system-deps k8s-bin ## Kill the leader 6 times (Lease 15/10/2 s; QUICK=1: 6/4/1 s); writes bench/results/failover.json
	$(PY) bench/failover.py $(if $(QUICK),--quick)

.PHONY: databases-up
databases-up: install system-deps ## Start the private test PostgreSQL and MariaDB
	$(PY) -m testbed.databases up

.PHONY: databases-down
databases-down: install ## Stop the private test databases
	$(PY) -m testbed.databases down

.PHONY: clean
clean: ## Remove caches and local state (not the venv)
	rm -rf .lockstep .pytest_cache .mypy_cache .ruff_cache build dist

.PHONY: bench-scale
bench-scale: install system-deps k8s-bin ## Fleet scale: N migrations x 5 past releases, operator vs Kopf floor (SIZES=100,1000 BEFORE=path/to/lockstep)
	$(PY) bench/fleet.py --sizes $(or $(SIZES),100,1000,3000) $(if $(BEFORE),--before $(BEFORE))
