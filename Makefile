# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := service

.PHONY: run test test-pg install install-test translations lint typecheck check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(MAKE) translations

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(MAKE) translations

translations:
	$(BIN)/pybabel compile --use-fuzzy -d service/translations -f --statistics 2>/dev/null || \
	  $(BIN)/pybabel compile -d service/translations

# Embedded mode: SQLite in instance/, jobs in-process, mail to instance/outbox.
run: install
	ACTIONLIST_DEV=1 $(BIN)/alembic upgrade head
	ACTIONLIST_DEV=1 $(BIN)/flask bootstrap
	ACTIONLIST_DEV=1 $(BIN)/flask run --host 127.0.0.1 --port 5000

# Lint, types, the architecture's import contracts (.importlinter), then the whole suite in
# TEST_PROCESSES pytest-xdist processes. A file's tests stay in one process (`--dist
# loadfile` in pyproject.toml: some files serve on a fixed port); every process creates
# its own PostgreSQL database and claims its own Redis database.
TEST_PROCESSES ?= 2
# TEST_DATABASE_URL / TEST_REDIS_URL add PostgreSQL / Redis runs;
# CI=true makes them required.
test: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

# The same on PostgreSQL + Redis too, both required (the local servers unless the URLs are set).
test-pg:
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}" \
	TEST_REDIS_URL="$${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" \
	CI=true $(MAKE) test

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
