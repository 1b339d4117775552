# refinery — `make demo`, `make test`, `make dev`. Needs only Python 3.11 and the package registries:
# uv is installed on first use, then uv installs everything else from uv.lock.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export REFINERY_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export UV_PYTHON ?= 3.11

DOTENV ?= $(CURDIR)/.env
DOTENV_MARK := \# Written by make setup

.PHONY: setup instance dotenv demo test test-fast check dev serve bench screenshots clean

setup: instance dotenv
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	@# with bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set (this machine's
	@# image sets it), Python cannot cache what it compiles, and every process (a run, dbt, the
	@# daemon) compiled each module it imported from source (import refinery.definitions 9.0 s
	@# -> 5.1 s here, a daily run's dbt start-up 6.0 -> 3.7 s: docs/BENCHMARKS.md)
	$(UV) sync --frozen --quiet --compile-bytecode
	$(UV) run python -m compileall -q refinery bench
	@# the dbt manifest the gold assets are built from (dbt parse; the code location never
	@# parses at import, except under `dagster dev`, and refuses a missing or stale manifest)
	$(UV) run dagster-dbt project prepare-and-package --file refinery/assets/gold/dbt_project.py

demo: setup
	$(UV) run python -m refinery.demo

# everything (what CI runs after `make check`), test files spread over two worker processes
# (pytest-xdist; each file's tests stay in one worker). xdist hands out the files with most tests
# first; handing out the slow files first instead was measured slower (12:49 against 11:44 on a
# fresh clone: two dbt- and daemon-heavy files at once contend for the 2 cores)
test: setup
	$(UV) run pytest -q -n 2 --dist loadfile

# the tests not marked slow: no daemon, no SIGKILLed subprocesses, no repeated dbt graphs
test-fast: setup
	$(UV) run pytest -q -m "not slow"

# the gates before the tests: lint, format, and the code location loading under dg
check: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run dg check defs

# The instance every entry point uses: dagster_home/dagster.yaml seeded into $DAGSTER_HOME, and
# refreshed when the repo's copy is newer (run monitoring settings reach existing instances).
instance:
	@mkdir -p "$(DAGSTER_HOME)" && cp -u dagster_home/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

# .env: every dagster command (CLI, dagster-daemon, dagster dev) loads it from the working
# directory, so `uv run dagster asset materialize ...` from the repo uses the same instance and
# data root as make dev / make demo. A variable set in the environment still wins. A .env not
# written here is left alone.
dotenv:
	@if [ -e "$(DOTENV)" ] && ! head -n1 "$(DOTENV)" | grep -q "^$(DOTENV_MARK)"; then \
		echo "$(DOTENV) exists and was not written by make setup: left alone"; \
	else \
		printf '%s\n' "$(DOTENV_MARK): the dagster CLI loads it from this directory." \
			'DAGSTER_HOME=$${DAGSTER_HOME:-$(abspath $(DAGSTER_HOME))}' \
			'REFINERY_DATA_DIR=$${REFINERY_DATA_DIR:-$(abspath $(REFINERY_DATA_DIR))}' > "$(DOTENV)"; \
	fi

dev: setup
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# the feature-serving API over the data root's online store (docs/SERVING.md)
serve: setup
	$(UV) run python -m refinery.online.server

bench: setup
	$(UV) run python -m bench.run

# The UI in headless Chromium (Debian's package; installed when missing and apt-get is there).
screenshots: setup
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(UV) run --with playwright python scripts/screenshots.py

clean:
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
	@if [ -e .env ] && head -n1 .env | grep -q "^$(DOTENV_MARK)"; then rm .env; fi
