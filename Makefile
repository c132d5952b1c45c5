# Chidori: `make run` starts a server with the embedded defaults, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-quick lint bench clean check-tools chart

check-tools:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
		{ echo "Python 3.11 or newer is required: set PYTHON=python3.11 (or newer) or install it." >&2; exit 1; }
	@scripts/check-java.sh

# Re-installs only when pyproject.toml changed (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# sparkmagic's Livy client only: its own dependencies pull in Jupyter and a Kerberos build.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps sparkmagic hdijupyterutils
	@touch $(STAMP)

setup: check-tools $(STAMP)

# One warm driver for the local cluster: a small PySpark job starts in ~2 s instead of ~18 s.
run: setup
	CHIDORI_WARM_POOL=$${CHIDORI_WARM_POOL:-1} $(BIN)/chidori server

test: setup
	$(BIN)/pytest

# The inner loop: everything but the tests that run real Spark jobs.
test-quick: setup
	$(BIN)/pytest -m "not spark"

# The Helm chart rendered by Helm itself (helm-python-sdk) into build/chart/, linted, and every
# object validated with kubernetes-validate --strict for the supported Kubernetes versions.
chart: setup
	$(BIN)/python scripts/chart.py

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

# The Celery + RabbitMQ peer that bench/dispatch.py runs beside Chidori (its own venv).
CELERY_HARNESS ?= ../shared/peers/celery
CELERY_VENV ?= .venv-celery
$(CELERY_VENV)/.installed-stamp:
	@if [ -f $(CELERY_HARNESS)/requirements.txt ]; then \
		$(PYTHON) -m venv $(CELERY_VENV) && \
		$(CELERY_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CELERY_HARNESS)/requirements.txt && \
		touch $@; \
	else echo "no Celery harness at $(CELERY_HARNESS): bench/dispatch.py skips the peer"; fi

bench: setup $(CELERY_VENV)/.installed-stamp
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/warm.py
	$(BIN)/python bench/acceptance.py
	$(BIN)/python bench/dispatch.py --rounds 3
	$(BIN)/python -m bench.jobs_list
	$(BIN)/python bench/shared_storage.py
	$(BIN)/python bench/log_memory.py
	$(BIN)/python bench/kubernetes.py
	$(BIN)/python bench/progress.py
	$(BIN)/python bench/live_views.py
	$(BIN)/python bench/connect.py

clean:
	rm -rf $(VENV) $(CELERY_VENV) .chidori .pytest_cache .mypy_cache .ruff_cache
