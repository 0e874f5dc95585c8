# One entry point for every task. `make test` creates .venv from pyproject.toml and runs the suite.
SHELL := /bin/bash
# The Lambda runtime is python3.13: prefer it. pyenv shims may exist without being usable, so each
# candidate is asked to run before it is chosen.
PY_CANDIDATES := $(wildcard /root/.pyenv/versions/3.13.*/bin/python3.13) python3.13 python3
PYTHON ?= $(firstword $(foreach p,$(PY_CANDIDATES),$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck check run demo bench clean

# Segment's own Webhooks (Actions) destination code, which tests/test_segment_sender.py runs
# (tools/segment-sender/send.js) against the local stack. npm ci installs exactly the lock's
# packages; --ignore-scripts: no package runs code at install (the webhook needs no native build).
# Without npm the test skips and says why. @segment/action-destinations is pinned at 3.387.0: the
# newest whose dependency tree this project's npm registry can install (3.497.0 pins
# @aws-sdk/client-kinesis 3.974.0, which it lacks); its webhook signs and sends as 3.497.0 does.
SENDER := tools/segment-sender
SENDER_STAMP := $(SENDER)/node_modules/.installed
.PHONY: segment-sender

$(SENDER_STAMP): $(SENDER)/package.json $(SENDER)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci in $(SENDER)"; \
		cd $(SENDER) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: tests/test_segment_sender.py will be skipped"; \
	fi

segment-sender: $(SENDER_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(SENDER_STAMP)
	$(BIN)/python -m pytest -q

check: lint typecheck test

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache $(SENDER)/node_modules

# --- SAM ---
# Deploy tooling (docs/deploying.md). aws-sam-cli lives in its own venv so its pins never fight the app's.
SAM_CLI_VERSION ?= 1.170.0
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
# sam build checks that the function's runtime (python3.13) is on PATH.
SAM := PATH=$(dir $(PYTHON)):$$PATH SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_BUILD_DIR := .aws-sam/build/WebhookFunction
# The Lambda runtime is arm64 on Amazon Linux 2023 (glibc 2.34): wheels are chosen for it whatever
# this machine is. LAMBDA_ARCH is the one knob of the recipe: `make lambda-artifact` sets it to this
# machine's architecture so the same artifact, built the same way, can run here.
DEPLOY_ARCH := aarch64
LAMBDA_ARCH ?= $(DEPLOY_ARCH)
LAMBDA_PIP_PLATFORM = --platform manylinux2014_$(LAMBDA_ARCH) --platform manylinux_2_28_$(LAMBDA_ARCH) --only-binary=:all: --python-version 3.13 --implementation cp
# Shipped by the python3.13 runtime: not packaged (jmespath stays: Powertools needs it, and bundling it is cheap).
RUNTIME_PROVIDED := boto3 botocore s3transfer

.PHONY: sam-venv validate-template sam-build build-WebhookFunction build-DeliveryFunction events

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)

validate-template: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1

# `sam build` runs this target (template.yaml: BuildMethod makefile) with ARTIFACTS_DIR set.
ARTIFACTS = $(abspath $(ARTIFACTS_DIR))
build-WebhookFunction build-DeliveryFunction:
	test -n "$(ARTIFACTS_DIR)"  # set by sam build
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' \
		|| { echo "python3.13 is needed to precompile for the python3.13 runtime (found $(PYTHON))"; exit 1; }
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-compile $(LAMBDA_PIP_PLATFORM) \
		--require-hashes -r handler/requirements.lock --target "$(ARTIFACTS)"
	cd "$(ARTIFACTS)" && for pkg in $(RUNTIME_PROVIDED); do rm -rf "$$pkg" "$$pkg"-*.dist-info; done
	rm -rf "$(ARTIFACTS)/bin"
	mkdir -p "$(ARTIFACTS)/handler"
	cd handler && find . -name '*.py' -not -path './cli/*' -not -path '*/__pycache__/*' \
		-exec install -D -m 0644 '{}' "$(ARTIFACTS)/handler/{}" ';'
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS)"

sam-build: $(STAMP) $(SAM_STAMP)
	$(SAM) build
	$(BIN)/python scripts/check_build.py $(SAM_BUILD_DIR) --python $(PYTHON)

events: $(STAMP)
	$(BIN)/python events/generate.py

# template.yaml's CloudWatch dashboard from handler/cli/panels.py (tests/test_template.py checks it).
.PHONY: dashboard
dashboard: $(STAMP)
	$(BIN)/python -m scripts.dashboard
# --- end SAM ---

# --- dependency locks ---
# Each lock pins every package with its hashes, resolved by uv (a dev dependency) from the file
# beside it for the Lambda platform: handler/requirements.lock (what the artifact ships) from the
# ranges in handler/requirements.txt, devstack/lambda-runtime.lock (the runtime's own packages, for
# `make lambda-test`) from devstack/lambda-runtime.txt. The hashes cover every wheel of each pinned
# release, so the locks install on arm64 and on this machine alike.
# `make lock` regenerates them, keeping each pin the ranges still allow (LOCK_ARGS=--upgrade takes
# the newest releases); `make lock-check` (CI) fails when a lock no longer matches its ranges.
LOCKS := handler/requirements.lock devstack/lambda-runtime.lock
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.13 \
	--python-platform $(DEPLOY_ARCH)-manylinux_2_28 --only-binary :all: --custom-compile-command "make lock"
LOCK_ARGS ?=

.PHONY: lock lock-check

lock: $(STAMP)
	for lock in $(LOCKS); do $(UV_COMPILE) $(LOCK_ARGS) "$${lock%.lock}.txt" -o "$$lock" || exit 1; done

# Regenerated from a copy of each lock (so its pins are kept where the ranges allow): any difference
# means the ranges moved on without the lock.
lock-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && for lock in $(LOCKS); do \
		cp "$$lock" "$$tmp/lock" && $(UV_COMPILE) "$${lock%.lock}.txt" -o "$$tmp/lock" || exit 1; \
		diff -u "$$lock" "$$tmp/lock" || { echo "$$lock is stale against $${lock%.lock}.txt: run make lock"; exit 1; }; \
	done; echo "locks up to date: $(LOCKS)"
# --- end dependency locks ---

# --- the artifact under the Lambda runtime client ---
# `make lambda-test` runs tests/test_lambda_artifact.py: the artifact, built by the recipe above for
# this machine (LAMBDA_ARCH), in a clean python3.13 with only the runtime's packages
# (LAMBDA_RUNTIME_DIR, from devstack/lambda-runtime.lock) under awslambdaric; `make test` runs it too.
# `make run ARTIFACT=1` serves that artifact behind the local stack.
HOST_ARCH := $(shell uname -m | sed 's/^arm64$$/aarch64/')
LAMBDA_RUNTIME_DIR := .lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME_DIR)/.installed
LAMBDA_ARTIFACT_DIR ?= build/lambda-$(HOST_ARCH)

.PHONY: lambda-runtime lambda-artifact lambda-test

$(LAMBDA_RUNTIME_STAMP): devstack/lambda-runtime.lock
	rm -rf "$(LAMBDA_RUNTIME_DIR)"
	$(PYTHON) -m pip install -q --disable-pip-version-check --only-binary=:all: \
		--require-hashes -r devstack/lambda-runtime.lock --target "$(LAMBDA_RUNTIME_DIR)"
	touch $@

lambda-runtime: $(LAMBDA_RUNTIME_STAMP)

# From an empty folder, as sam build does: nothing of an earlier build can hide a missing file.
lambda-artifact:
	rm -rf "$(LAMBDA_ARTIFACT_DIR)"
	$(MAKE) --no-print-directory build-WebhookFunction ARTIFACTS_DIR="$(LAMBDA_ARTIFACT_DIR)" LAMBDA_ARCH=$(HOST_ARCH)

lambda-test: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_lambda_artifact.py
# --- end the artifact under the Lambda runtime client ---

# --- bench ---
# Performance suite (docs/performance.md): the product against same-run baselines; results in
# bench/results.json. BENCH_ARGS=--quick for a short smoke run, BENCH_ARGS="--only throughput" for one part.
BENCH_ARGS ?=

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
# --- end bench ---

# --- local stack ---
# docs/operating.md. `make run` holds the terminal until Ctrl-C; `make demo` talks to it from another one.
# Ports: LOCAL_FRONT_PORT (3000), LOCAL_SMC_PORT (8899), LOCAL_AWS_PORT (5005); a real SMC tenant:
# LOCAL_SMC_ADMIN_URL, LOCAL_SMC_ORGANIZATION, LOCAL_SMC_API_KEY, LOCAL_SMC_API_SECRET.
# `make run ARTIFACT=1` builds the artifact (lambda-artifact) and serves it under awslambdaric
# instead of calling the working tree's handler in-process.
.PHONY: run demo
RUN_ARTIFACT := $(filter 1,$(ARTIFACT))

run: $(STAMP) $(if $(RUN_ARTIFACT),lambda-artifact lambda-runtime)
	$(BIN)/python -m devstack run $(if $(RUN_ARTIFACT),--artifact "$(LAMBDA_ARTIFACT_DIR)" --runtime-dir "$(LAMBDA_RUNTIME_DIR)")

demo: $(STAMP)
	$(BIN)/python -m devstack demo
# --- end local stack ---

# --- load ---
# Bounded load test (docs/reliability.md): starts the local stack (python -m devstack) on free
# ports, sends single events and batches for 20 s (at most 20,000 requests), checks SMC holds each
# event once, writes load/results.json; exits 1 on any error, loss or duplicate.
# LOAD_ARGS="--duration 60 --concurrency 16", or "--url … --sandbox-url …" for a running stack.
LOAD_ARGS ?=
.PHONY: load

load: $(STAMP)
	$(BIN)/python -m load.run $(LOAD_ARGS)

# The figures of docs/reliability.md (its generated section) from the last `make test`
# (tests/.reliability.json) and `make load`.
.PHONY: reliability
reliability: $(STAMP)
	$(BIN)/python -m load.report
# --- end load ---

# --- security ---
# bandit over handler/ (its four findings are triaged in security/triage.md and kept in the
# baseline security/bandit-baseline.json: only a new finding fails); runs in CI.
# `make audit`: pip-audit over the installed venv. It needs PyPI's vulnerability API, which this
# project's CI machines cannot reach, so it is run where that API is reachable (security/triage.md);
# --strict fails rather than report "clean" for a package it could not check.
.PHONY: security audit

security: $(STAMP)
	$(BIN)/bandit -r handler -q -b security/bandit-baseline.json

audit: $(STAMP)
	$(BIN)/pip-audit --skip-editable --strict --progress-spinner off
# --- end security ---
