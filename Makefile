# The two set-up commands of a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment it needs (.venv) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint redis-server clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# A real Redis for the demo and the tests: redis-server from PATH, installed with apt-get
# when missing (as root on Debian/Ubuntu). Skipped when REDIS_URL points at your own server;
# the tests use that server only without redis-server on PATH, and FLUSH its dbs 0 and 1.
redis-server:
	@if [ -z "$$REDIS_URL" ] && ! command -v redis-server >/dev/null; then \
	  echo "redis-server not found: installing it with apt-get"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || \
	  { echo "could not install redis-server: install it yourself or set REDIS_URL"; exit 1; }; \
	fi

demo: $(VENV)/.installed redis-server
	$(VENV)/bin/recsys demo

test: $(VENV)/.installed redis-server
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app batch evaluation functions infra models tests benchmarks
	$(VENV)/bin/lint-imports --no-cache --no-logo  # the import graph: [tool.importlinter]

clean:
	rm -rf recsys-demo .pytest_cache
