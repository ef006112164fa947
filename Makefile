# Two commands matter: `make demo` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
PYTEST_ARGS ?=
TOX_ARGS ?=
# Host-site variants (tests/sites/<name>.py) that need nothing but SQLite; `make test`
# runs tests/sites in each. `make test SITES=` skips them (quicker while developing).
SITES ?= custom_user naive_datetimes atomic_requests router i18n i18n_fixed_redirect login_required
MARIADB_URL ?= mysql://root@127.0.0.1:3306/hubspot

.PHONY: demo test test-sites test-postgres test-mariadb test-browser lint typecheck format check-migrations bench test-matrix dist docs clean

$(STAMP): setup.cfg pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[testing,celery,sdk,async]' -r requirements-dev.txt
	@touch $(STAMP)

# The demo needs only the package and django-environ: a first `make demo` is quick.
$(DEMO_STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . 'django-environ>=0.11'
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) example_project/demo.py

# coverage run (not pytest-cov): the app's pytest plugin is imported before pytest-cov starts.
# The whole suite, then tests/sites once per host-site variant; coverage of all runs.
test: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -p -m pytest $(PYTEST_ARGS)
	@for site in $(SITES); do \
	  echo "=== host site: tests.sites.$$site"; \
	  $(PY) -m coverage run -p -m pytest -q tests/sites --ds=tests.sites.$$site || exit 1; \
	done
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --fail-under=95

test-sites: $(STAMP)
	@for site in $(SITES); do \
	  echo "=== host site: tests.sites.$$site"; \
	  $(PY) -m pytest -q tests/sites --ds=tests.sites.$$site $(PYTEST_ARGS) || exit 1; \
	done

# MariaDB/MySQL: the host-site tests on it, then the whole suite. mysqlclient is built from
# source: it needs Debian's libmariadb-dev and pkg-config (.ci/run installs them).
$(VENV)/.mysqlclient: $(STAMP)
	$(PY) -m pip install --quiet 'mysqlclient>=2.2'
	@touch $@

test-mariadb: $(VENV)/.mysqlclient
	MARIADB_URL=$(MARIADB_URL) $(PY) -m pytest -q tests/sites --ds=tests.sites.mariadb
	DATABASE_URL=$(MARIADB_URL) MARIADB_URL=$(MARIADB_URL) $(PY) -m pytest -q -m "not browser" $(PYTEST_ARGS)

test-postgres: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} $(PY) -m pytest $(PYTEST_ARGS)

test-browser: $(STAMP)
	HUBSPOT_REQUIRE_BROWSER=1 $(PY) -m pytest -m browser $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m docutils --halt=warning README.rst /dev/null
	$(PY) -m docutils --halt=warning CHANGELOG.rst /dev/null

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check-migrations: $(STAMP)
	$(PY) -m django makemigrations hubspot_connect --check --dry-run --settings=tests.settings

# Refresh throughput and CPU (run.py); API calls against a bare requests.Session and the
# shared budget under several processes (api_calls.py, needs Redis for its second half).
bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/api_calls.py

# tox finds interpreters as python3.X on PATH: put pyenv's there (no-op without pyenv).
test-matrix: $(STAMP)
	PATH="$$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/3.1[0-9]*/bin 2>/dev/null | tr '\n' :)$$PATH" \
	  $(VENV)/bin/tox run-parallel --parallel auto $(TOX_ARGS)

# The Sphinx site; any warning (a broken reference, a missing page) fails the build.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

dist: $(STAMP)
	rm -rf dist
	$(PY) -m build
	$(VENV)/bin/twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info .tox .mypy_cache .ruff_cache .coverage htmlcov artifacts example_project/var docs/_build
