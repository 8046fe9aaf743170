# Quick start: `make demo` runs a bundled scenario, `make test` runs the whole suite.
# Both create the virtual environment and install the project first (only when pyproject.toml changed);
# `make test` also installs the servers the tests start (Debian's mosquitto and victoria-metrics) and chromium.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= scenarios/bottling.yaml
TORCH ?= 2.13.0

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# the CPU build of PyTorch first: left to the resolver, torch would come as a multi-GB CUDA build
	$(PY) -m pip install --quiet --disable-pip-version-check torch==$(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/twin run $(SCENARIO)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	bash scripts/test-deps.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/sim_speed.py
	bash scripts/test-deps.sh
	$(PY) bench/pipeline.py
	$(PY) bench/predict.py
	$(PY) bench/compare.py
	$(PY) bench/dashboard.py
	$(PY) bench/synth.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
