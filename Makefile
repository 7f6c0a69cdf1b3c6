# The project's commands. Each target installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

# implicit asks for single-threaded BLAS; quiet TensorFlow; Spark on loopback only.
export OPENBLAS_NUM_THREADS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: install redis chromium test test-quick demo lint clean chaos

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[spark,dev]'
	$(PY) -m pip check
	touch $(STAMP)

# The Redis tests need a real redis-server: from Debian's packages when it is not on PATH.
redis:
	@command -v redis-server >/dev/null || test -x /usr/bin/redis-server || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# The explorer's browser tests drive Debian's Chromium through Playwright (Playwright's own browser
# download is not reachable): from Debian's packages when it is not on PATH.
chromium:
	@command -v chromium >/dev/null || test -x /usr/bin/chromium || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The suite on 2 pytest-xdist worker processes; tests/conftest.py makes `--dist loadscope` hand
# out its work units (the tests sharing an expensive fixture: one worker builds it once), longest
# first. On a quiet 2-core machine: about 10 min, against 24.3 min in one process (TEST_WORKERS=0).
TEST_WORKERS ?= 2
test: install redis chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The tests that need no trained chain, server or Spark (fixtures that do are marked slow in
# tests/conftest.py, and so are the tests SLOW_TESTS there lists: the input gate's data docs,
# network fits, worker processes). About 1.5 minutes on 2 cores; `make test` runs everything.
test-quick: install
	$(PY) -m pytest -m "not slow and not spark" $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/related-videos demo

# 20 SIGKILLs of `main` at seeded random moments on the toy world, each checked and rerun
# (tests/chaos.py; about 20 minutes). The suite runs 3 of them.
chaos: install
	$(PY) -m tests.chaos --kills 20 --seed 7

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf workspace mlruns mlartifacts .pytest_cache

# Benchmarks print figures and assert no timings. A new one: a bench-NAME target on bench-install,
# listed under bench.
.PHONY: bench bench-install bench-candidates bench-als bench-two-tower bench-pipeline bench-serving

bench: bench-candidates bench-als bench-two-tower bench-pipeline bench-serving

bench-install: install
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[spark,dev,bench]'
	$(PY) -m pip check

bench-candidates: bench-install
	$(PY) -m benchmarks.bench_candidates

# ALS: our step and fit_als against bare implicit and Spark MLlib, 3 interleaved rounds of fresh
# processes, and the step alternated with the bare fit in one process (about 10 minutes).
bench-als: bench-install
	$(PY) -m benchmarks.bench_als --size default
	$(PY) -m benchmarks.bench_als --size large --spark-repeat 1

# A two-tower epoch: fit_two_tower against a bare Keras fit of the same towers, at 200k and 1M
# events (about 8 minutes).
bench-two-tower: bench-install
	$(PY) -m benchmarks.bench_two_tower --size default
	$(PY) -m benchmarks.bench_two_tower --size large --epochs 2 --rounds 1

# The whole chain at 40k and 200k events, then at 1M events (about 50 minutes in all).
bench-pipeline: bench-install
	$(PY) -m benchmarks.bench_pipeline --sizes small,default
	$(PY) -m benchmarks.bench_pipeline --sizes large

# Serving: the HTTP service (1 and 2 workers) under load against Feast in-process and raw SQLite
# (about 4 minutes).
bench-serving: bench-install
	$(PY) -m benchmarks.bench_serving
