# LetterShop e-mail channel. `make demo` and `make test` work on a fresh Debian machine (as root).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION := 3.13
VENV := .venv
PY := $(VENV)/bin/python
# The Lambda runtime's interpreter: pyenv's python3.13, else one on PATH.
BASE_PYTHON := $(firstword $(wildcard $(HOME)/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)) $(shell command -v python$(PYTHON_VERSION)))
STAMP := $(VENV)/.installed
# The real-world mail corpus, an external conformance suite (tests/corpus.py): beside the clone when
# it is there; .ci/run insists on it. Without it those tests are skipped with one line.
LETTERSHOP_MAIL_CORPUS ?= $(abspath $(wildcard ../shared/corpus/real-world-mail))
export LETTERSHOP_MAIL_CORPUS
# `make fuzz`: how many examples each property-based test runs (make test runs a bounded few).
FUZZ_EXAMPLES ?= 20000

.PHONY: help install system-packages demo test lint types unit integration fuzz bench build rehearse deploy clean

help:
	@echo "make demo   - set everything up and run one real poll on the local stack"
	@echo "make test   - set everything up, then lint, types and all tests"
	@echo "make install | lint | types | unit | integration | fuzz | bench | build | rehearse | deploy | clean"

system-packages:
	@if ! command -v dovecot >/dev/null 2>&1 || ! test -x /usr/lib/dovecot/pop3; then \
		echo "installing dovecot-pop3d (Debian package)"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-pop3d >/dev/null; \
	fi
	@if ! command -v bwrap >/dev/null 2>&1; then \
		echo "installing bubblewrap (Debian package; the sandbox of the Lambda rehearsal)"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null; \
	fi

$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml
	@if [ -z "$(BASE_PYTHON)" ]; then \
		echo "Python $(PYTHON_VERSION) (the Lambda runtime) is missing: 'pyenv install $(PYTHON_VERSION)' or 'apt-get install python$(PYTHON_VERSION)'"; exit 1; fi
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(PYTHON_VERSION)".split("."))))'; then \
		rm -rf $(VENV); $(BASE_PYTHON) -m venv $(VENV); fi
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: system-packages $(STAMP)

demo: install
	$(PY) -m devstack.demo

lint: install
	$(VENV)/bin/ruff check src cli tests devstack bench tools
	$(VENV)/bin/ruff format --check src cli tests devstack bench tools

types: install
	$(VENV)/bin/mypy src
	$(VENV)/bin/mypy cli devstack bench tests tools

unit: install
	$(VENV)/bin/pytest tests/unit

integration: install
	$(VENV)/bin/pytest tests/integration

test: lint types template-check
	$(VENV)/bin/pytest

# The property-based tests with many more examples (FUZZ_EXAMPLES=N for each test).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz LETTERSHOP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -m property

# cfn-lint, `sam validate --lint` and checkov on template.yaml, offline. sam and checkov live in
# their own virtualenvs (.venv-tools/<name>, one per line of requirements-tools.txt): they pin
# boto3 versions that conflict with each other and with the project's.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# No real account is ever asked: dummy credentials, no profile, no telemetry.
OFFLINE_AWS := env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline \
	AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null SAM_CLI_TELEMETRY=0

$(TOOLS_STAMP): requirements-tools.txt
	@if [ -z "$(BASE_PYTHON)" ]; then \
		echo "Python $(PYTHON_VERSION) is missing: 'pyenv install $(PYTHON_VERSION)' or 'apt-get install python$(PYTHON_VERSION)'"; exit 1; fi
	@grep -Ev '^[[:space:]]*(#|$$)' requirements-tools.txt | while read -r requirement; do \
		name=$${requirement%%[=<>!~;[ ]*}; \
		test -x $(TOOLS)/$$name/bin/python || $(BASE_PYTHON) -m venv $(TOOLS)/$$name || exit 1; \
		echo "installing $$requirement into $(TOOLS)/$$name"; \
		$(TOOLS)/$$name/bin/python -m pip install -q --disable-pip-version-check "$$requirement" || exit 1; \
	done
	@touch $(TOOLS_STAMP)

.PHONY: template-check
template-check: install $(TOOLS_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	$(OFFLINE_AWS) $(TOOLS)/aws-sam-cli/bin/sam validate --lint --region eu-central-1 --template template.yaml
	$(OFFLINE_AWS) $(TOOLS)/checkov/bin/checkov --skip-download --quiet --compact --framework cloudformation --file template.yaml

bench: install
	$(PY) -m bench

# `make build`: `sam build` with the SAM CLI of .venv-tools (no global `sam` needed) for the
# template's architecture (arm64), with Python $(PYTHON_VERSION) first on PATH; then
# tools/check_artifact.py imports each function's handler from its build folder with only the Lambda
# runtime beside it (.venv-tools/lambda-runtime: Powertools of the layer and boto3,
# requirements-lambda-runtime.txt): a dependency missing from src/requirements.txt fails the build.
# On a machine that cannot load arm64 wheels it imports an extra build for its own architecture.
SAM := $(TOOLS)/aws-sam-cli/bin/sam
SAM_ENV := PATH="$(dir $(BASE_PYTHON)):$$PATH" SAM_CLI_TELEMETRY=0
LAMBDA_RUNTIME := $(TOOLS)/lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME)/.installed
# `make deploy ARGS=...`: the arguments of `sam deploy`. The default --guided asks for every
# parameter (the first deploy); later `make deploy ARGS="--config-env prod"` for prod, or
# `make deploy ARGS=` for the default (test) stack of samconfig.toml.
ARGS ?= --guided

# Made afresh when its requirements change, so nothing but them is ever in it.
$(LAMBDA_RUNTIME_STAMP): requirements-lambda-runtime.txt
	@if [ -z "$(BASE_PYTHON)" ]; then \
		echo "Python $(PYTHON_VERSION) is missing: 'pyenv install $(PYTHON_VERSION)' or 'apt-get install python$(PYTHON_VERSION)'"; exit 1; fi
	rm -rf $(LAMBDA_RUNTIME)
	$(BASE_PYTHON) -m venv $(LAMBDA_RUNTIME)
	$(LAMBDA_RUNTIME)/bin/python -m pip install -q --disable-pip-version-check -r requirements-lambda-runtime.txt
	@touch $(LAMBDA_RUNTIME_STAMP)

build: $(STAMP) $(TOOLS_STAMP) $(LAMBDA_RUNTIME_STAMP)
	$(SAM_ENV) $(SAM) build
	$(SAM_ENV) $(PY) -m tools.check_artifact --sam $(SAM) --runtime-python $(LAMBDA_RUNTIME)/bin/python

# `make rehearse`: the built poll function run by the Lambda runtime's stand-in in a sandbox shaped
# like Lambda (tools/rehearse.py: read-only root, /tmp of EphemeralStorage, MemorySize, Timeout),
# against the local stack (tests/integration/test_rehearsal.py; tests/rehearsal/: the sandbox
# itself). Builds first when the build is missing or older than template.yaml or src/; `make test`
# runs it only when a build exists, and says in one line that it skipped otherwise.
BUILT := .aws-sam/build/template.yaml
$(BUILT): template.yaml $(shell find src -type f -not -path '*/__pycache__/*' 2>/dev/null)
	$(MAKE) build

rehearse: install $(BUILT)
	$(VENV)/bin/pytest tests/rehearsal tests/integration/test_rehearsal.py

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
