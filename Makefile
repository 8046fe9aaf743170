# Quick start: `make demo` runs a bundled scenario, `make test` runs the whole suite; `make check` is the fast loop.
# Both create the virtual environment and install the project first (only when pyproject.toml changed);
# `make test` also installs the servers the tests start (Debian's mosquitto and victoria-metrics) and chromium.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= scenarios/bottling.yaml
TORCH ?= 2.13.0
PYSPARKPLUG ?= 0.6.1

.PHONY: demo test check lint compiled bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# the CPU build of PyTorch first: left to the resolver, torch would come as a multi-GB CUDA build
	$(PY) -m pip install --quiet --disable-pip-version-check torch==$(TORCH)
	# the rest through uv (from PyPI): it fetches and installs the ~110 packages side by side, 19 s where pip took 48 s
	# on 2 cores (the same versions; torch, already there, is kept); with pip where uv cannot be had
	$(PY) -m pip install --quiet --disable-pip-version-check uv \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -e '.[test]' \
	  || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	# Sparkplug B: pysparkplug declares paho-mqtt<2 but runs on paho 2 (its v1 callbacks), so no resolver pass
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps pysparkplug==$(PYSPARKPLUG)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/twin run $(SCENARIO)

# ruff, and the import contracts in pyproject.toml (the packages' imports follow the data flow)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

# the project's bytecode, written once: where PYTHONDONTWRITEBYTECODE is set (as on our 2-core build machine), every `twin`
# process a test starts would otherwise compile the modules it imports again (`twin run` of cnc_cell 1 h: 0.54 s, not 0.46 s)
compiled: $(STAMP)
	$(PY) -m compileall -q twin sensors predictors dashboard

# the inner loop before each commit (< 90 s): lint and the tests not marked slow, on two processes (pytest-xdist)
check: lint compiled
	bash scripts/test-deps.sh
	$(PY) -m pytest -n 2 -m "not slow" -q

# everything CI runs: lint and the whole suite, slow statistical and end-to-end runs included. Four processes on
# two cores: a third of the suite's time is tests waiting (live runs, servers starting, a store down for 30 s), and
# the extra workers fill it. Measured back to back on 2026-12-04 (2 cores, tests handed out mixed, see
# tests/conftest.py): three workers 433 s, four 407 s, five 418 s (10.8, 11.3 and 11.9 min of user CPU)
test: lint compiled
	bash scripts/test-deps.sh
	$(PY) -m pytest -n 4

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
