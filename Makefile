# pgtwist: the two commands a newcomer needs are `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck unit bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

run: venv
	$(BIN)/python -m pgtwist.devrun

lint: venv
	$(BIN)/ruff check pgtwist tests twisted benchmarks
	$(BIN)/ruff format --check pgtwist tests twisted benchmarks

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit tests/contract

test: venv lint typecheck
	$(BIN)/pytest

# `make bench BENCHFLAGS=--quick` for a 2-minute check; see benchmarks/README.rst.
bench: venv
	command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer)
	$(BIN)/python -m benchmarks.run $(BENCHFLAGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache twisted/plugins/dropin.cache
