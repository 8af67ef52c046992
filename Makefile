# distilloop: `make run` and `make test` do all the set-up they need (idempotent: a second run installs nothing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-labelstudio
STAMP := $(VENV)/.distilloop-installed
LS_STAMP := $(LS_VENV)/.distilloop-installed
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test install lint unit integration bench-model bench-al bench-al-trust bench-pii studio-start studio-stop clean bench-cascade bench-bundle bench-bundle-multitask crash-test bench-coaching bench-lexical bench-finetune-processes bench-scale

install: $(STAMP) $(LS_STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU build on this machine; a looser pin pulls CUDA.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

# Label Studio pins openai<2 and Django: it lives in its own virtualenv, reached only over HTTP.
$(LS_STAMP):
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q "label-studio==1.23.*"
	@touch $@

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work here).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

run: install
	$(BIN)/distilloop init --demo
	$(BIN)/distilloop studio start
	$(BIN)/streamlit run app/dashboard.py --server.address $(HOST) --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install $(CHROMIUM)
	$(BIN)/ruff check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: install $(CHROMIUM)
	$(BIN)/pytest -m integration

# ruff, then the layers and the other import contracts of pyproject.toml (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports

bench-model: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

bench-al-trust: $(STAMP)
	$(BIN)/python benchmarks/bench_al.py --trust

bench-al: $(STAMP)
	$(BIN)/python benchmarks/bench_al.py

bench-pii: $(STAMP)
	$(BIN)/python benchmarks/bench_pii.py

bench-cascade: $(STAMP)
	$(BIN)/python benchmarks/bench_cascade.py

bench-bundle: $(STAMP)
	$(BIN)/python benchmarks/bench_bundle.py

# the multi-task bundle vs four single-head 3-layer fine-tunes, the heads' default 4 epochs, 3 training seeds (about 30 min)
bench-bundle-multitask: $(STAMP)
	nice -n 5 $(BIN)/python benchmarks/bench_bundle.py --student multitask --layers 3 --epochs 4 --seeds 42,43,44

# distilloop score on 10k/100k/1M-message PostgreSQL pools, local and Ray engines: ARGS="--sizes 10000,100000" runs a part
bench-scale: $(STAMP)
	nice -n 5 $(BIN)/python benchmarks/bench_scale.py $(ARGS)

# kill -9 anywhere: each long command SIGKILLed 20 times at random moments, then rerun and checked (KILLS=N)
KILLS ?= 20
crash-test: install
	$(BIN)/python benchmarks/crash_test.py --kills $(KILLS)

# every student kind on the starter set (data/demo): ARGS="--heads intent --kinds probe,setfit" runs a part
bench-coaching: $(STAMP)
	$(BIN)/python benchmarks/bench_coaching.py $(ARGS)

bench-lexical: $(STAMP)
	$(BIN)/python benchmarks/bench_lexical.py $(ARGS)

# the same fine-tune on 1 and on 2 processes (starter set, real encoder): ARGS="--epochs 2 --limit 0"
bench-finetune-processes: $(STAMP)
	$(BIN)/python benchmarks/bench_finetune_processes.py $(ARGS)

studio-start: install
	$(BIN)/distilloop studio start

studio-stop: $(STAMP)
	$(BIN)/distilloop studio stop

clean:
	rm -rf var test-output bench-results .pytest_cache .ruff_cache
