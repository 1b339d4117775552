# refinery — `make demo`, `make test`, `make dev`. Needs only Python 3.11 and the package registries:
# uv is installed on first use, then uv installs everything else from uv.lock.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export REFINERY_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export UV_PYTHON ?= 3.11

.PHONY: setup demo test dev bench clean

setup:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --quiet
	@mkdir -p "$(DAGSTER_HOME)" && cp -n dagster_home/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml" 2>/dev/null || true
	@# loading the code location parses the dbt manifest when it is missing or stale
	$(UV) run python -c "import refinery.definitions"

demo: setup
	$(UV) run python -m refinery.demo

test: setup
	$(UV) run pytest -q

dev: setup
	$(UV) run dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: setup
	$(UV) run python -m bench.run

clean:
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
