# Two commands on a fresh machine:
#   make run    set everything up, start the demo on SQLite (http://127.0.0.1:8000)
#   make test   set everything up, run lint, types, architecture contracts and the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup browser run test lint typecheck contracts unit bench clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("partnerloop needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# Browser tests drive Debian's chromium through Playwright (never `playwright
# install`, which downloads a browser): install the package when it is missing.
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }; \
	}

run: setup
	$(BIN)/partnerloop demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy partnerloop

contracts: setup
	$(BIN)/lint-imports

unit: setup browser
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck contracts unit

bench: setup
	$(BIN)/python benchmarks/redirect.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
