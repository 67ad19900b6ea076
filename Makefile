# Two commands on a fresh machine with only Python 3.11+:
#   make demo   - set up, then run Baton end to end on the bundled emulators and embedded Redis
#   make test   - set up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/baton: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/baton

demo: setup
	$(BIN)/baton demo

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	$(BIN)/python bench/api_economy.py
	$(BIN)/python bench/api_economy.py --crm salesforce
	$(BIN)/python bench/commitments.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/stream.py

clean:
	rm -rf $(VENV) .baton .pytest_cache
