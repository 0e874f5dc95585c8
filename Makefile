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

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: lint typecheck test

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache

# --- SAM ---
# Deploy tooling (docs/deploy.md). aws-sam-cli lives in its own venv so its pins never fight the app's.
SAM_CLI_VERSION ?= 1.170.0
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
# sam build checks that the function's runtime (python3.13) is on PATH.
SAM := PATH=$(dir $(PYTHON)):$$PATH SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_BUILD_DIR := .aws-sam/build/WebhookFunction
# The Lambda runtime is arm64 on Amazon Linux 2023 (glibc 2.34): wheels are chosen for it whatever
# this machine is.
LAMBDA_PIP_PLATFORM := --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.13 --implementation cp
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
		-r handler/requirements.txt --target "$(ARTIFACTS)"
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
# --- end SAM ---
