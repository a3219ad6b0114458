# Two commands on a fresh machine: `make run` and `make test`. Everything else they need
# (a virtualenv, Python packages, a redis-server binary) is installed here, not by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: run test test-postgres bench lint format redis-server chromium postgresql pgbouncer faketime php node clean

run: $(VENV)/.installed redis-server
	$(BIN)/python -m webhooks_project.run

# The suite runs under webhooks_project/testrun.py, which stops the test Redis (and on
# PostgreSQL the cluster and PgBouncer) when pytest ends, passed, failed or interrupted.
# PYTEST_ARGS="tests/test_x.py -x" runs part of it.
test: $(VENV)/.installed-test redis-server chromium faketime php node
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m webhooks_project.testrun $(PYTEST_ARGS)

# The whole suite again on PostgreSQL: a private cluster under var/postgres, reached through
# PgBouncer in transaction-pooling mode under var/pgbouncer (unix sockets only), as production
# runs (docs/deploying.md, "Several machines").
test-postgres: $(VENV)/.installed-test redis-server chromium postgresql pgbouncer faketime php node
	$(BIN)/python -m webhooks_project.testrun --postgres $(PYTEST_ARGS)

# The benchmark (never part of `make test`): every throughput scenario on SQLite, then again on
# the private PostgreSQL cluster (var/bench-postgres) with the hostile neighbour and the scaling
# curve; prints both side by side, writes var/bench/results.json. BENCH_ARGS=--quick for less.
bench: $(VENV)/.installed redis-server postgresql
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# The embedded Redis runs Debian's redis-server binary; install it once if it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || \
		{ echo "Installing redis-server..."; $(APT) update -qq && $(APT) install -y -qq redis-server >/dev/null; }

# Browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
chromium:
	@[ -x /usr/bin/chromium ] || \
		{ echo "Installing chromium..."; $(APT) update -qq && $(APT) install -y -qq chromium >/dev/null; }

# A worker whose clock runs ahead (tests/faults/test_clocks_and_locks.py) runs under libfaketime.
faketime:
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || \
		{ echo "Installing faketime..."; $(APT) update -qq && $(APT) install -y -qq faketime >/dev/null; }

# The event catalogue's receiver snippets run for real in Node.js and PHP
# (tests/test_catalogue.py).
php:
	@command -v php >/dev/null 2>&1 || \
		{ echo "Installing php-cli..."; $(APT) update -qq && $(APT) install -y -qq php-cli >/dev/null; }

node:
	@command -v node >/dev/null 2>&1 || \
		{ echo "Installing nodejs..."; $(APT) update -qq && $(APT) install -y -qq nodejs >/dev/null; }

postgresql:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		{ echo "Installing postgresql..."; $(APT) update -qq && $(APT) install -y -qq postgresql >/dev/null; }

pgbouncer:
	@[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || \
		{ echo "Installing pgbouncer..."; $(APT) update -qq && $(APT) install -y -qq pgbouncer >/dev/null; }

clean:
	rm -rf $(VENV) var
