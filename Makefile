# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
# torch comes first and pinned: torch==2.13.0 is a CPU build on this machine's disk, while an unpinned
# torch pulled in by a dependency would download a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: install system-deps lint test demo bench reproduce clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed system-deps

# Fashion-MNIST ships as a Debian package (offline data for tests and recipes).
system-deps:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi; \
	fi

# Lint first (seconds), then the tests; the rules are in pyproject.toml ([tool.ruff]).
lint: install
	$(VENV)/bin/ruff check hf_vq training benchmarks tests

test: lint
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/accelerate launch --num_processes 1 --cpu -m hf_vq.train vqvae --config demo_vqvae

bench: install
	$(PY) benchmarks/quantizer.py --json benchmarks/results/quantizer.json
	$(PY) benchmarks/speed_table.py benchmarks/results/quantizer.json

reproduce: install
	$(PY) training/reproduce.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
