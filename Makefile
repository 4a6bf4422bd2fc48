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

.PHONY: run test lint install install-dev constraints dataset prometheus chromium bench bench-throughput reliability train-defaults data-noto-emoji clean container-engine image image-test gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Every install is held to the versions in constraints.txt (the Dockerfile's too).
install: $(VENV)/.service-installed
$(VENV)/.service-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $@

install-dev: $(VENV)/.dev-installed
$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,dev]'
	touch $@ $(VENV)/.service-installed

# Re-pin after changing a dependency: the exact versions now in .venv (local labels such as
# +cpu dropped, so that PyPI's wheels match too).
constraints: install-dev
	{ echo "# Pinned versions for every install (make constraints regenerates this file)."; \
	  $(BIN)/python -m pip list --format=freeze --exclude-editable \
	  | sed -E 's/\+[A-Za-z0-9.]+$$//' | grep -v -i -E '^(pip|setuptools|wheel)=='; } > constraints.txt

dataset: $(FASHION_MNIST)
$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

# Debian's prometheus and promtool, for tests/service/test_monitoring.py and the promtool checks.
prometheus: $(PROMETHEUS)
$(PROMETHEUS):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus

# Debian's chromium, driven headless by Playwright in tests/service/api/test_ui.py (no browser download).
chromium: $(CHROMIUM)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

run: install
	$(BIN)/python -m service --host $(HOST) --port $(PORT)

# The container tests (tests/deploy/, marker `container`) run in `make image-test`.
test: install-dev dataset prometheus chromium
	$(BIN)/python -m pytest -q -m "not container"

# podman (runc, netavark) and debootstrap from Debian, unless a docker engine answers. On hosts
# without pure cgroup v2, podman runs with deploy/podman/containers.conf (docs/deploy.md).
PODMAN_PACKAGES := podman runc netavark aardvark-dns slirp4netns uidmap fuse-overlayfs catatonit \
                   iptables debootstrap
container-engine:
	@if docker info >/dev/null 2>&1 || { [ -x /usr/bin/podman ] && [ -x /usr/sbin/debootstrap ]; }; \
	then :; else \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(PODMAN_PACKAGES); fi

# The CPU image, genserve:cpu, with podman or docker (deploy/docker/build.py). BUILD_CA: a CA
# bundle pip trusts in the build (a TLS-inspecting proxy's; never in the image), by default the
# host's; BUILD_CA= builds without one.
BUILD_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
image: container-engine
	$(PYTHON) deploy/docker/build.py $(if $(BUILD_CA),--ca $(BUILD_CA))

# Builds the image, then checks the running container and the compose stack (tests/deploy/).
image-test: install-dev container-engine
	BUILD_CA=$(BUILD_CA) $(BIN)/python -m pytest -q -m container tests/deploy

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Latency per operation, then the exact PixelCNN and PixelRNN samplers against the naive one
# (about 4 min).
bench: install-dev
	$(BIN)/python bench/profiling.py latency
	$(BIN)/python bench/profiling.py fast-sampler --model pixelcnn-fashion --out docs/bench/pixelcnn_sampler.json
	$(BIN)/python bench/profiling.py fast-sampler --model pixelrnn-fashion --out docs/bench/pixelrnn_sampler.json

# Fuzzing, soak, overload, hot reload, corrupt-model start-up and graceful shutdown figures
# (docs/reliability.md). RELIABILITY_ARGS=--quick runs each briefly.
RELIABILITY_ARGS ?=
reliability: install-dev
	$(BIN)/python bench/reliability.py $(RELIABILITY_ARGS)

# This service against raw onnxruntime and peer servers (bench/README.md). BENCH_ARGS=--quick
# is a smoke check; BENCH_ARGS="--out docs/bench/throughput.md" writes the table for the docs.
BENCH_ARGS    ?=
PYTRITON_VENV := .venv-pytriton
PYTHON312     ?= $(shell pyenv prefix 3.12 2>/dev/null)/bin/python3.12
WRK           := /usr/bin/wrk

bench-throughput: install-dev $(VENV)/.bench-installed $(PYTRITON_VENV)/.installed $(WRK)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

# The first run on an NVIDIA GPU (bench/profiling.py gpu-check): the service with SERVICE_DEVICE=cuda,
# every graph on CUDA, images/s against raw onnxruntime on CUDA; writes docs/bench/gpu.md.
# Without a GPU it runs on the CPU fallback. GPU_CHECK_ARGS="--out /tmp/gpu.md" writes elsewhere.
GPU_CHECK_ARGS ?=
gpu-check: install-dev
	$(BIN)/python bench/profiling.py gpu-check $(GPU_CHECK_ARGS)

$(VENV)/.bench-installed: bench/requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -r bench/requirements.txt
	touch $@

# PyTriton 0.7 needs Python 3.12 (with its shared libpython, which pyenv builds); without one
# the bench reports the PyTriton peer as skipped.
$(PYTRITON_VENV)/.installed: bench/requirements-pytriton.txt
	@if [ -x "$(PYTHON312)" ]; then \
	  $(PYTHON312) -m venv $(PYTRITON_VENV) && \
	  $(PYTRITON_VENV)/bin/python -m pip install -q -r bench/requirements-pytriton.txt && \
	  touch $@; \
	else echo "no Python 3.12 at '$(PYTHON312)': the PyTriton peer will be skipped"; fi

$(WRK):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq wrk

# A real colour image set: Noto Color Emoji (Apache-2.0 images) drawn into data/noto-emoji/<group>/
# as 64×64 RGB PNGs on white, about 3,600 images in 9 classes (docs/training.md, "Noto Color Emoji").
NOTO_EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
EMOJI_TEST      := /usr/share/unicode/emoji/emoji-test.txt
data-noto-emoji: install-dev $(NOTO_EMOJI_FONT) $(EMOJI_TEST)
	$(BIN)/python -m training.datasets.noto_emoji --out data/noto-emoji --size 64
$(NOTO_EMOJI_FONT) $(EMOJI_TEST):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  fonts-noto-color-emoji unicode-data

# Retrains the shipped defaults (about 6.5 hours on 2 CPU cores), then exports them.
train-defaults: install-dev dataset
	bash training/train_defaults.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
