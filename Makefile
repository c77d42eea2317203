# payql: `make run` to serve, `make test` for the suite. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTHON ?= python3

.PHONY: install run test lint format bench vendor screenshot clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

run: install
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/payql serve

test: install
	$(PY) -m pytest $(ARGS)

# The benchmark (bench/run.py): QUICK=1 for a short run.
bench: install
	$(PY) bench/run.py $(if $(QUICK),--quick,)

# Re-fetch the vendored browser libraries from npm and check them (payql/static/vendor).
vendor:
	payql/static/vendor/fetch.sh

# The README's screenshot of the dashboard (needs Debian's chromium).
screenshot: install
	$(PY) .github/screenshot.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
