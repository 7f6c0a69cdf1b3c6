# The project's commands. Each target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

# implicit asks for single-threaded BLAS; quiet TensorFlow; Spark on loopback only.
export OPENBLAS_NUM_THREADS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: install test test-quick demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[spark,dev]'
	$(PY) -m pip check
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: install
	$(PY) -m pytest -m "not slow and not spark" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/related-videos demo

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf workspace mlruns mlartifacts .pytest_cache

# Benchmarks print figures and assert no timings. A new one: a bench-NAME target on bench-install,
# listed under bench.
.PHONY: bench bench-install bench-candidates

bench: bench-candidates

bench-install: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[spark,dev,bench]'
	$(PY) -m pip check

bench-candidates: bench-install
	$(PY) -m benchmarks.bench_candidates
