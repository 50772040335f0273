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

# The whole suite on both backends, against a throwaway PostgreSQL (reuses
# KOJO_TEST_POSTGRES_URL if already set): in parallel but for tests/processes, which runs
# alone afterwards (scripts/run-tests). Extra pytest options: PYTEST_ARGS='-k sqlite'.
test:
	scripts/with-postgres env PYTHON=$(PYTHON) scripts/run-tests $(PYTEST_ARGS)

check: lint typecheck test

format:
	$(PYTHON) -m ruff format $(LINT_PATHS)
	$(PYTHON) -m ruff check --fix $(LINT_PATHS)
