# mlreactor — newcomers need two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck checkov chromium bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
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

## test: install everything the tests need, then lint, type-check and run the whole suite
test: $(STAMP) node_modules/.installed chromium lint typecheck checkov
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy shared functions function_app.py

## checkov: scan infra/ (Bicep) offline; checkov lives in its own venv (.venv-checkov)
checkov:
	scripts/checkov.sh

## bench: cold start, engine throughput, ModelRegistered latency, fleet retrain (figures beside same-run baselines)
bench: $(STAMP) node_modules/.installed
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/ledger_tables.py
	$(BIN)/python benchmarks/model_registered_latency.py
	$(BIN)/python benchmarks/fleet_retrain.py --events 2000

clean:
	rm -rf $(VENV) .venv-checkov node_modules .mlreactor .pytest_cache .mypy_cache .ruff_cache
