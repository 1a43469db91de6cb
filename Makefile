# Two commands do all the set-up on a fresh machine (Python 3.11 + make):
#   make run    — embedded service (SQLite, in-process jobs, WeChat sandbox) with demo data
#   make test   — the whole suite on PostgreSQL + Redis at their default local ports
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
STAMP  := $(VENV)/.installed
FLASK  := $(BIN)/flask --app wsgi
CATALOGS := $(patsubst %.po,%.mo,$(wildcard locales/*/LC_MESSAGES/messages.po))

.PHONY: run test lint check i18n-extract catalogs openapi bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --statistics -d locales -D messages -l $*

catalogs: $(STAMP) $(CATALOGS)

run: $(STAMP) catalogs
	$(FLASK) db upgrade
	$(FLASK) demo seed
	$(FLASK) demo walkthrough booking
	$(FLASK) demo history
	$(FLASK) dashboard rollup --days 35
	$(FLASK) serve --port $(PORT)

test: $(STAMP) catalogs
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app tests bench

# Re-extract user-facing strings and merge them into both catalogs (then translate the .po files).
i18n-extract: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l -o locales/messages.pot --no-location --sort-output .
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching

# The published API contract (mini-app and back office); a test fails when it drifts from the code.
openapi: $(STAMP)
	$(FLASK) openapi write --format json docs/openapi.json

bench: $(STAMP)
	$(BIN)/python bench/dms_intake.py

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
