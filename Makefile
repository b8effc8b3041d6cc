# Two commands for a fresh machine (see README):
#   make run    the whole pipeline on the embedded PostgreSQL
#   make test   sqlfluff, pytest and dbt build on small simulated data (what CI runs)
# Both create .venv with the pinned dependencies first. Needs Python 3.11+ and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# make test's own home (its PostgreSQL, warehouse, exports and pytest's temporary folders), apart
# from your warehouse: $TDW_HOME/test when TDW_HOME is set, else .tdw/test; TEST_HOME=DIR chooses it.
TEST_HOME ?= $(if $(TDW_HOME),$(abspath $(TDW_HOME))/test,$(CURDIR)/.tdw/test)
# --basetemp: pytest's folders under the test home, emptied when pytest starts. Without it pytest
# uses /tmp/pytest-of-<user>/ and deletes older sessions' folders there, a running one's included.
# The test home must be one path, without spaces: make splits it into words, and pytest empties its
# --basetemp first (a split path would empty a folder outside the test home). Checked by the
# targets that use it (an empty TEST_HOME would also point them at your own warehouse).
test_home_ok = $(if $(filter 1,$(words $(TEST_HOME))),,$(error TEST_HOME must be one path without spaces, got '$(TEST_HOME)' (with TDW_HOME set it is $$TDW_HOME/test): choose one with TEST_HOME=DIR))
PYTEST := $(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15 --basetemp=$(TEST_HOME)/pytest

export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install run test lint pytest dbt-build-test docs clean stop

install: $(STAMP)

# --no-compile: Python compiles a module when it is first imported; compiling every installed
# file up front (plotly, pandas, dbt...) took 39 s of a 89 s install here.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e .
	touch $(STAMP)

## The main job on the embedded default (a local PostgreSQL under .tdw/pgdata).
run: $(STAMP)
	$(BIN)/tdw run

## The test suite: the whole pipeline and every dbt test on a small simulated dataset, the
## dashboards' SQL, sqlfluff (after the build: replica models compile against the raw tables),
## then pytest; in a separate home (.tdw/test), so it never touches your own warehouse.
test: $(STAMP)
	$(test_home_ok)
	TDW_HOME=$(TEST_HOME) $(BIN)/tdw run --ci
	TDW_HOME=$(TEST_HOME) $(BIN)/tdw metabase check
	@# sqlfluff beside pytest: its dbt templater is mostly one Python thread, and pytest's two
	@# workers leave gaps (waits on PostgreSQL and subprocesses); its report follows pytest's, and
	@# either failing fails the target
	TDW_HOME=$(TEST_HOME) $(BIN)/tdw lint --processes 1 > $(TEST_HOME)/lint.log 2>&1 & lint=$$!; \
	$(PYTEST); tests=$$?; \
	wait $$lint; linted=$$?; echo "--- sqlfluff (tdw lint, exit $$linted):"; cat $(TEST_HOME)/lint.log; \
	[ $$tests -eq 0 ] && [ $$linted -eq 0 ]

lint: $(STAMP)
	$(test_home_ok)
	TDW_HOME=$(TEST_HOME) $(BIN)/tdw lint

pytest: $(STAMP)
	$(test_home_ok)
	mkdir -p $(TEST_HOME)
	$(PYTEST)

docs: $(STAMP)
	$(BIN)/tdw dbt docs generate

stop:
	$(test_home_ok)
	-$(BIN)/tdw db stop
	-TDW_HOME=$(TEST_HOME) $(BIN)/tdw db stop

clean: stop
	rm -rf .tdw $(VENV)
