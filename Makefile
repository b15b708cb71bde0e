# The two commands: `make run` (the embedded default) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FLASK := $(BIN)/flask --app wsgi

.PHONY: run test install migrate bench clean messages translations

# The French and Arabic catalogues (service/translations/*/LC_MESSAGES/messages.po, in the repo)
# compile to .mo files, which are build output.
CATALOGUES := $(wildcard service/translations/*/LC_MESSAGES/messages.po)
COMPILED := $(CATALOGUES:.po=.mo)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) $(COMPILED)

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile -i $< -o $@

translations: $(COMPILED)

# After changing reader-facing text: extract it, then translate what `make messages` adds.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ --add-location=file --sort-by-file \
		--project "DAWNS Membership" --copyright-holder "DAWNS" -o service/translations/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -i service/translations/messages.pot \
		-d service/translations

migrate: $(STAMP) $(COMPILED)
	$(FLASK) db upgrade

PORT ?= 5000

# Readable log lines for development (LOG_FORMAT=json in production), for every step of `make run`.
run: export LOG_FORMAT ?= text
run: migrate
	$(FLASK) demo --seed 500   # demo members with 18 months of history, for /staff/insights
	$(FLASK) demo --port $(PORT)

test: $(STAMP) $(COMPILED)
	$(BIN)/lint-imports --no-cache   # the layers of service/ (pyproject.toml [tool.importlinter])
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
