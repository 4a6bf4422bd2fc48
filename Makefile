# `make run` sets everything up and serves the bundled models; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PROMETHEUS    := /usr/bin/prometheus
CHROMIUM      := /usr/bin/chromium

.PHONY: run test lint install install-dev dataset prometheus chromium bench train-defaults clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(VENV)/.service-installed
$(VENV)/.service-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

install-dev: $(VENV)/.dev-installed
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $@ $(VENV)/.service-installed

dataset: $(FASHION_MNIST)
$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

# Debian's prometheus and promtool, for tests/test_monitoring.py and the promtool checks.
prometheus: $(PROMETHEUS)
$(PROMETHEUS):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

# Debian's chromium, driven headless by Playwright in tests/test_ui.py (no browser download).
chromium: $(CHROMIUM)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

run: install
	$(BIN)/python -m service --host $(HOST) --port $(PORT)

test: install-dev dataset prometheus chromium
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python bench/service_latency.py

# Retrains the shipped defaults (about 1.5 hours on 2 CPU cores), then exports them.
train-defaults: install-dev dataset
	bash training/train_defaults.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
