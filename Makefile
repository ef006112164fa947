# Two commands matter: `make demo` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
PYTEST_ARGS ?=
TOX_ARGS ?=

.PHONY: demo test test-postgres test-browser lint typecheck format check-migrations bench test-matrix dist docs clean

$(STAMP): setup.cfg pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[testing,celery]' -r requirements-dev.txt
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
test: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS)
	$(PY) -m coverage report --fail-under=95

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

bench: $(STAMP)
	$(PY) benchmarks/run.py

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
