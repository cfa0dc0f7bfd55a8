# pgtwist: the two commands a newcomer needs are `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's PyPy (Python 3.9) with pgtwist's dependencies: `make bench` runs
# pgtwist on it too (the pgtwist-pypy rows); pgtwist itself comes from PYTHONPATH.
PYPY_VENV := .venv-pypy
PYPY_STAMP := $(PYPY_VENV)/.installed

.PHONY: venv pypy run test lint typecheck unit package-check bench fuzz clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

pypy: $(PYPY_STAMP)

$(PYPY_STAMP): pyproject.toml | $(STAMP)
	command -v pypy3 >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pypy3 pypy3-venv)
	test -x $(PYPY_VENV)/bin/python || pypy3 -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > $(PYPY_VENV)/requirements.txt
	# cryptography 43 is the last with a wheel for PyPy 3.9 (newer ones need a Rust build).
	echo 'cryptography<44' >> $(PYPY_VENV)/requirements.txt
	$(PYPY_VENV)/bin/python -m pip install --quiet --prefer-binary -r $(PYPY_VENV)/requirements.txt
	touch $(PYPY_STAMP)

run: venv
	$(BIN)/python -m pgtwist.testing.devrun

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

test: venv lint typecheck package-check
	$(BIN)/pytest

# `make bench BENCHFLAGS=--quick` for a 3-minute check; see benchmarks/README.rst.
# Without PyPy (no root for apt-get, say) it runs without the pgtwist-pypy rows.
bench: venv
	command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer)
	$(MAKE) pypy || echo "PyPy could not be set up: no pgtwist-pypy rows"
	$(BIN)/python -m benchmarks.run $(BENCHFLAGS)

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
	rm -rf $(VENV) $(PYPY_VENV) .fuzz .mypy_cache .ruff_cache .pytest_cache twisted/plugins/dropin.cache
