# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= .data
export OPENPROFILES_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test lint bench venv clean

$(BIN)/openprofiles: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/openprofiles

run: venv
	$(BIN)/openprofiles serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --first-run-admin

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadgroup

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Benchmarks print figures; docs/performance.md records them with the full-size commands.
bench: venv
	$(BIN)/python benchmarks/search.py --profiles 100000
	$(BIN)/python benchmarks/ingest.py --objects 20000 --customers 2000 --http-objects 2000
	$(BIN)/python benchmarks/contacts.py --records 10000 --customers 1500 --events 500
	$(BIN)/python benchmarks/ui.py --profiles 100000 --contacts 1000
	$(BIN)/python benchmarks/identity.py --profiles 10000
	$(BIN)/python benchmarks/put_object_cpu.py --clients 8 --objects 3000
	$(BIN)/python benchmarks/contention.py --database-url $(OPENPROFILES_TEST_DATABASE_URL) --seconds 20

# The venv and build output only: the data dir holds the database and the keyring, which no
# clean-up target may take.
clean:
	rm -rf $(VENV) build *.egg-info
