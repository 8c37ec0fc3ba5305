# The commands the README names. Each one creates .venv and installs the project into it
# when it is missing or older than pyproject.toml, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=
# Two pytest-xdist workers, each taking whole files (a notebook's cells stay in order in one kernel); on 2 cores this
# brings the suite under 12 minutes. `make test PYTEST_PARALLEL=` runs it in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile
LAB_ARGS ?=

.PHONY: lab test test-fast test-repeat install server-start server-stop server-status reset clean-venv student book

lab: $(STAMP)            ## open JupyterLab with the embedded PostgreSQL running (or DATABASE_URL's server)
	$(PY) -m helpers lab $(LAB_ARGS)

test: $(TEST_STAMP)      ## the whole suite: unit tests + every notebook under nbval (strict)
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)      ## unit tests only
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-repeat: $(TEST_STAMP)    ## repeatability: make test x5, notebooks twice, reversed, in one process, workshop scale (slow)
	$(PY) scripts/test_repeat.py $(REPEAT_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.12 or similar.")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

# The test tools (pytest, nbval, playwright, ...) are the `test` extra: only `make test*` installs them.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(TEST_STAMP)

student: $(STAMP)        ## dist/student/: notebooks without outputs, helpers without the reference solutions
	$(PY) -m helpers build student

BOOK_STAMP := $(VENV)/.installed-book
$(BOOK_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[book]'
	@touch $(BOOK_STAMP)

book: $(BOOK_STAMP)      ## dist/book/: the executed course as a static HTML site (stored outputs, nothing runs)
	$(PY) -m helpers build book

server-start: $(STAMP)
	$(PY) -m helpers server start
server-stop: $(STAMP)
	$(PY) -m helpers server stop
server-status: $(STAMP)
	$(PY) -m helpers server status
reset: $(STAMP)          ## drop every lesson database the workbook created (they are rebuilt on demand)
	$(PY) -m helpers reset

clean-venv:
	rm -rf $(VENV)
