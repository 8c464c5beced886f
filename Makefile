# invsync: the two set-up commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_PORT ?= 9092
KAFKA_DATA ?= .invsync/kafka
PYTEST_ARGS ?=
LINT_PATHS := models connectors streams invsync tests dashboards docs/examples $(wildcard bench)

.PHONY: run worker test faults unit lint format docs bench bench-rules bench-scale bench-lookup kafka-start kafka-stop dashboards clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev,dashboards]"
	touch $(STAMP)

install: $(STAMP)

## run: set up, then the product demo: local broker (unless KAFKA_BOOTSTRAP_SERVERS is set),
## mock Increff + marketplace, a worker and the simulator, checked against ground truth.
## Options: make run DEMO_ARGS="--duration 30 --rate 5000"
DEMO_ARGS ?=
run: $(STAMP)
	$(BIN)/invsync demo --kafka-port $(KAFKA_PORT) --kafka-data-dir $(KAFKA_DATA) $(DEMO_ARGS)

## worker: set up, start the local broker (unless KAFKA_BOOTSTRAP_SERVERS is set), start a worker
worker: $(STAMP)
ifeq ($(strip $(KAFKA_BOOTSTRAP_SERVERS)),)
	$(BIN)/invsync kafka start --port $(KAFKA_PORT) --data-dir $(KAFKA_DATA)
	KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) $(BIN)/invsync worker
else
	$(BIN)/invsync worker
endif

## test: set up, then the whole suite (unit + integration on a real broker)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## faults: the fault suite, longer and over several seeds (CI runs it small inside `make test`)
## Options: make faults FAULT_SEEDS="1 2 3" FAULT_EVENTS=20000 FAULT_RATE=800 FAULT_BAD_EXAMPLES=10
FAULT_SEEDS ?= 1 2 3 4 5 6 7 8 9 10
FAULT_EVENTS ?= 20000
FAULT_RATE ?= 800
FAULT_BAD_EXAMPLES ?= 10
faults: $(STAMP)
	@failed=""; for seed in $(FAULT_SEEDS); do \
	  echo "== fault suite, seed $$seed ($(FAULT_EVENTS) events at $(FAULT_RATE)/s)"; \
	  FAULT_ALL=1 FAULT_SEED=$$seed FAULT_EVENTS=$(FAULT_EVENTS) FAULT_RATE=$(FAULT_RATE) \
	  FAULT_BAD_EXAMPLES=$(FAULT_BAD_EXAMPLES) \
	    $(BIN)/python -m pytest tests/faults -q -rfE $(PYTEST_ARGS) || failed="$$failed $$seed"; \
	done; \
	if [ -n "$$failed" ]; then echo "faults: seeds with a failure:$$failed"; exit 1; fi; \
	echo "faults: every seed passed"

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/mypy dashboards/generate.py

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

## dashboards: regenerate dashboards/grafana/*.json from dashboards/generate.py
dashboards: $(STAMP)
	$(BIN)/python dashboards/generate.py

## docs: regenerate docs/schemas/*.json and docs/openapi.json from the models
docs: $(STAMP)
	$(BIN)/python -m invsync.contractdocs

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## bench-rules: the inventory rules alone, in-process (no broker): CPU per event of each stage
## Options: make bench-rules RULES_ARGS="--events 400000 --batch 2000 --gc 700"
RULES_ARGS ?=
bench-rules: $(STAMP)
	$(BIN)/python -m bench.rules $(RULES_ARGS)

## bench-scale: N keys (one SNAPSHOT each) in one worker: apply time, RSS, SIGKILL -> publishing
## Options: make bench-scale SCALE_ARGS="--keys 1000000 --bootstrap 127.0.0.1:19092"
SCALE_ARGS ?= --keys 100000
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

## bench-lookup: p50/p99 of the pre-order lookup with N keys loaded, idle and under a paced feed
## Options: make bench-lookup LOOKUP_ARGS="--keys 100000 --workers 2 --bootstrap 127.0.0.1:19092"
LOOKUP_ARGS ?= --keys 100000
bench-lookup: $(STAMP)
	$(BIN)/python -m bench.lookup $(LOOKUP_ARGS)

kafka-start: $(STAMP)
	$(BIN)/invsync kafka start --port $(KAFKA_PORT) --data-dir $(KAFKA_DATA)

kafka-stop: $(STAMP)
	$(BIN)/invsync kafka stop --data-dir $(KAFKA_DATA)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
