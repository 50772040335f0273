# kojo developer and CI entry points. `make check` is what CI runs.
PYTHON ?= python
PYTEST_ARGS ?=
LINT_PATHS := src tests bench

.PHONY: install lint typecheck test check format

install:
	$(PYTHON) -m pip install -e '.[test]'

lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m ruff format --check $(LINT_PATHS)

typecheck:
	$(PYTHON) -m mypy src

# The whole suite on every backend, against a throwaway PostgreSQL and a throwaway
# MariaDB (each reused when KOJO_TEST_POSTGRES_URL / KOJO_TEST_MYSQL_URL is set already):
# in parallel but for tests/processes, which runs alone afterwards (scripts/run-tests).
# Extra pytest options: PYTEST_ARGS='-k sqlite'.
test:
	scripts/with-postgres scripts/with-mariadb env PYTHON=$(PYTHON) scripts/run-tests $(PYTEST_ARGS)

check: lint typecheck test

format:
	$(PYTHON) -m ruff format $(LINT_PATHS)
	$(PYTHON) -m ruff check --fix $(LINT_PATHS)
