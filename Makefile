# pgtwist: the two commands a newcomer needs are `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's PyPy (Python 3.9) with pgtwist's dependencies: `make bench` runs
# pgtwist on it too (the pgtwist-pypy rows); pgtwist itself comes from PYTHONPATH.
PYPY_VENV := .venv-pypy
PYPY_STAMP := $(PYPY_VENV)/.installed
# The same with what `make test-pypy` needs to run tests on it.
PYPY_TEST_STAMP := $(PYPY_VENV)/.test-installed
# `make run RUNTIME=pypy` runs the development pooler on PyPy.
RUNTIME ?= cpython

.PHONY: venv pypy run run-pypy test test-pypy lint typecheck unit package-check bench soak fuzz clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

pypy: $(PYPY_STAMP)

$(PYPY_STAMP): pyproject.toml | $(STAMP)
	# PyPy is a supported runtime: without it (no root for apt-get, say) this fails.
	command -v pypy3 >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pypy3 pypy3-venv) || \
		(echo "make pypy: pypy3 is missing and could not be installed (apt-get install pypy3 pypy3-venv as root)" >&2; exit 1)
	test -x $(PYPY_VENV)/bin/python || pypy3 -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > $(PYPY_VENV)/requirements.txt
	# cryptography 43 is the last with a wheel for PyPy 3.9 (newer ones need a Rust build).
	echo 'cryptography<44' >> $(PYPY_VENV)/requirements.txt
	$(PYPY_VENV)/bin/python -m pip install --quiet --prefer-binary -r $(PYPY_VENV)/requirements.txt
	touch $(PYPY_STAMP)

$(PYPY_TEST_STAMP): $(PYPY_STAMP)
	# pg8000, not psycopg: pure Python, no libpq needed (the smoke test's client).
	$(PYPY_VENV)/bin/python -m pip install --quiet --prefer-binary pytest 'pytest-twisted>=1.14' tomli pg8000 hypothesis
	touch $(PYPY_TEST_STAMP)

ifeq ($(RUNTIME),pypy)
run: run-pypy
else
run: venv
	$(BIN)/python -m pgtwist.testing.devrun
endif

# The development pooler (`make run`) on PyPy; PostgreSQL comes from the
# same place as for `make run` (the pgserver wheel in .venv, or the system's).
run-pypy: pypy
	PYTHONPATH=$(CURDIR) PGTWIST_PG_BIN="$$($(BIN)/python -c 'from pgtwist.testing.embedded import findPostgresBin; print(findPostgresBin())')" \
		$(PYPY_VENV)/bin/python -m pgtwist.testing.devrun

lint: venv
	$(BIN)/ruff check pgtwist tests twisted benchmarks
	$(BIN)/ruff format --check pgtwist tests twisted benchmarks

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit tests/contract

# Builds the sdist and the wheel, checks what they carry, and runs the
# commands of a wheel installed into a fresh virtualenv (.ci/package-check).
package-check: venv
	.ci/package-check $(BIN)/python

# The PyPy half (its set-up included) runs beside the CPython half: the
# integration tests spend much of their time waiting on PostgreSQL and
# pgtwist, and both halves together stay within ten minutes on two cores.
# Both must pass; PyPy's output follows CPython's.
test: venv
	$(MAKE) --no-print-directory test-pypy > .test-pypy.log 2>&1 & pypy=$$!; \
	$(MAKE) --no-print-directory lint typecheck package-check && $(BIN)/pytest --durations=15; \
	cpython=$$?; wait $$pypy; pypy=$$?; \
	echo "---- make test-pypy (beside the CPython tests) ----"; cat .test-pypy.log; \
	echo "make test: CPython exit $$cpython, PyPy exit $$pypy"; \
	test $$cpython -eq 0 && test $$pypy -eq 0

# The unit and contract tests and the integration smoke test in every
# pipeline on Debian's PyPy (Python 3.9), the production runtime for
# long-lived connections: pgtwist from the checkout, PostgreSQL as for CPython.
# test_soak.py tests the soak's own harness (benchmarks/soak.py), a CPython
# program built on psycopg's and asyncpg's C builds, which PyPy lacks: it
# runs with the CPython tests.
test-pypy: $(PYPY_TEST_STAMP)
	PYTHONPATH=$(CURDIR) PGTWIST_PG_BIN="$$($(BIN)/python -c 'from pgtwist.testing.embedded import findPostgresBin; print(findPostgresBin())')" \
		$(PYPY_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/contract tests/integration/test_pipelines_smoke.py \
		--ignore=tests/unit/test_soak.py

# `make bench BENCHFLAGS=--quick` for a 3-minute check; see benchmarks/README.rst.
# Without PyPy (no root for apt-get, say) it runs without the pgtwist-pypy and
# floor-pypy rows.
bench: venv
	command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer)
	$(MAKE) pypy || echo "PyPy could not be set up: no pgtwist-pypy and floor-pypy rows"
	$(BIN)/python -m benchmarks.run $(BENCHFLAGS)

# The chaos soak (benchmarks/soak.py, docs/reliability.rst): 10 minutes of
# mixed load and faults; `make soak SOAKFLAGS="--minutes 2 --seed 7"`.
soak: venv
	$(BIN)/python -m benchmarks.soak $(SOAKFLAGS)

# Coverage-guided fuzzing with atheris (the fuzz extra; CPython on Linux or
# macOS), FUZZ_SECONDS per target: an input that fails lands in
# tests/fuzz_regressions/<target>/ and the run stops (see its README.rst).
# `make fuzz FUZZ_TARGETS=codec FUZZ_SECONDS=600` for one target, longer.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= startup codec
FUZZ_STAMP := $(VENV)/.fuzz-installed

$(FUZZ_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: venv $(FUZZ_STAMP)
	for target in $(FUZZ_TARGETS); do \
		$(BIN)/python -m tests.fuzz.run $$target --seconds $(FUZZ_SECONDS) || exit 1; \
	done

clean:
	rm -rf $(VENV) $(PYPY_VENV) .test-pypy.log .fuzz .mypy_cache .ruff_cache .pytest_cache twisted/plugins/dropin.cache
