# mlreactor — newcomers need two commands: `make run` and `make test`.
#
# Python: production runs 3.13, the newest Python Flex Consumption supports (infra/app/api.bicep); Azure Functions
# still supports 3.11, so `make test` runs the suite on both. scripts/find-python.sh finds each interpreter (PATH,
# then pyenv); PYTHON=/path/to/python3.13 or COMPAT_PYTHON=... choose others.
PYTHON        ?= $(shell scripts/find-python.sh 3.13)
COMPAT_PYTHON ?= $(shell scripts/find-python.sh 3.11)
VENV          := .venv-py313
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.installed
COMPAT_VENV   := .venv-py311
COMPAT_BIN    := $(COMPAT_VENV)/bin
COMPAT_STAMP  := $(COMPAT_VENV)/.installed
# The worker protocol's generated messages (FunctionRpc_pb2 …) as Microsoft publishes them, inside this wheel's
# tests/protos; installed beside the venv, not into it, where its top-level `tests` package would shadow ours.
WORKER_PROTOS := azure-functions-runtime-v1==1.2.0

.PHONY: run test lint typecheck checkov doctor chromium bench clean

# The shipped reactions.yaml allows the workspaces in MLREACTOR_SUBSCRIBED_WORKSPACES (Bicep sets it in Azure):
# locally, `make run` and `make bench` allow the workspace of the bundled sample deliveries.
SAMPLE_WORKSPACE := /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod
run bench: export MLREACTOR_SUBSCRIBED_WORKSPACES ?= $(SAMPLE_WORKSPACE)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip install -q --no-deps --upgrade --target $(VENV)/worker-protos $(WORKER_PROTOS)
	touch $@

$(COMPAT_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(COMPAT_BIN)/python || $(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install -q --upgrade pip
	$(COMPAT_BIN)/python -m pip install -q -r requirements-dev.txt
	$(COMPAT_BIN)/python -m pip install -q --no-deps -e .
	touch $@

node_modules/.installed: $(wildcard package.json package-lock.json)
	if [ -f package.json ]; then npm ci --no-audit --no-fund --loglevel=error; fi
	mkdir -p node_modules && touch $@

# headless Chromium for the timeline page test (Debian's package; needs root, as on CI and these machines)
chromium:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## run: install, replay the bundled sample deliveries (embedded SQLite, dry-run), then simulate the whole chain
run: $(STAMP)
	@state=$$(mktemp -d); \
	echo "== replaying the sample Azure ML deliveries (ledger: $$state)"; \
	$(BIN)/mlreactor replay --state "$$state" tests/events/eventgrid/*.json; \
	echo; echo "== the same deliveries again: Event Grid delivers at least once, mlreactor acts once"; \
	$(BIN)/mlreactor replay --state "$$state" tests/events/cloudevents/*.json; \
	echo; echo "== the retrain -> test -> release chain against a simulated workspace and Azure DevOps"; \
	$(BIN)/mlreactor simulate

## test: install everything the tests need, then lint, type-check, scan and run the whole suite on 3.13 and 3.11
# MLREACTOR_REQUIRE_WORKER=1: on 3.13 the tests that drive Microsoft's worker (tests/worker) must run, not skip.
test: $(STAMP) $(COMPAT_STAMP) node_modules/.installed chromium lint typecheck checkov doctor
	@echo "== the suite on Python 3.13 (production), with Microsoft's worker"
	MLREACTOR_REQUIRE_WORKER=1 $(BIN)/python -m pytest -q
	@echo "== the suite on Python 3.11 (still supported; the worker tests need 3.13 and skip)"
	$(COMPAT_BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy shared functions function_app.py
	$(BIN)/mypy --python-version 3.11 shared functions function_app.py

## doctor: azure-functions-doctor's checks for a Flex Consumption deployment (no failures, no unexpected warnings)
doctor: $(STAMP)
	scripts/doctor.sh $(BIN)

## checkov: scan infra/ (Bicep) offline; checkov lives in its own venv (.venv-checkov)
checkov:
	scripts/checkov.sh

## bench: cold start and engine throughput (prints figures beside same-run baselines)
bench: $(STAMP) node_modules/.installed
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/ledger_tables.py
	$(BIN)/python benchmarks/rules_load.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) .venv-checkov node_modules .mlreactor .pytest_cache .mypy_cache .ruff_cache
