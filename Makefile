# Every target sets itself up: a fresh machine needs only python3 (>= 3.10) and make.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3
# The JupyterLab extension (TypeScript in labextension/) is built by `pip install` itself
# (hatch-jupyter-builder runs jlpm, which comes with jupyter-builder); `labext` rebuilds it
# when its sources change after that, and reinstalls it where JupyterLab looks for it.
# jlpm's scripts call jlpm and jupyter-builder again: both must be on PATH.
JLPM   := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" jlpm
LABEXT := nbtasks/labextension/package.json
LABEXT_SOURCES := $(wildcard labextension/src/*.ts labextension/style/*) \
                  labextension/package.json labextension/yarn.lock labextension/tsconfig.json

LOCK   := requirements/lock.txt
# nbtasks itself, editable, built by the locked backend already in .venv (no isolated build
# env that would fetch the newest hatchling); jlpm, which the build hook runs, is in .venv/bin
INSTALL_SELF = PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
LATEST := .venv-latest
LOWEST := .venv-lowest

.PHONY: setup labext demo lint test test-labext test-latest test-lowest lock bench lab clean

# Installs exactly what the lock names (hashes checked, nothing resolved), build backend
# included, then nbtasks itself without build isolation: the same packages on every machine.
$(STAMP): pyproject.toml $(LOCK)
	bash tools/system-deps.sh build
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(INSTALL_SELF)
	$(PY) -m pip check
	touch $(STAMP)

setup: $(STAMP)

$(LABEXT): $(LABEXT_SOURCES) | $(STAMP)
	cd labextension && $(JLPM) install --immutable && $(JLPM) build:prod
	$(INSTALL_SELF)

labext: $(LABEXT)  ## rebuild the JupyterLab extension (Tasks sidebar) after its sources changed

demo: setup  ## run the getting-started tutorial headless and print what it computed
	$(PY) tools/run_notebook.py notebooks/01-getting-started.ipynb

lint: setup  ## ruff, with the rule set in pyproject.toml
	$(VENV)/bin/ruff check nbtasks tests bench tools

test: setup labext lint  ## every test: lint, TypeScript units, core, a real local cluster, the tutorials, the browser
	bash tools/system-deps.sh
	$(MAKE) --no-print-directory test-labext
	$(PY) -m pytest

test-labext: setup  ## the JupyterLab extension's TypeScript unit tests (node --test)
	cd labextension && $(JLPM) install --immutable && $(JLPM) test

# A separate environment with the newest releases pyproject.toml allows (the lock is not
# used): what the next fresh install would get if the lock were refreshed today. It prints
# how those releases differ from the lock, then runs every test against them.
test-latest: labext  ## every test against the newest allowed releases, in .venv-latest
	bash tools/system-deps.sh
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test,bench,lab]'
	$(LATEST)/bin/python tools/drift.py $(LOCK)
	$(MAKE) --no-print-directory test-labext
	$(LATEST)/bin/python -m pytest

# The oldest releases pyproject.toml admits for nbtasks' own requirements (uv's
# lowest-direct resolution): the lower bounds stay honest only while this passes.
test-lowest: labext  ## every test against the lowest allowed releases, in .venv-lowest
	bash tools/system-deps.sh
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(VENV)/bin/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[test,bench,lab]'
	$(LOWEST)/bin/python tools/drift.py $(LOCK)
	$(MAKE) --no-print-directory test-labext
	$(LOWEST)/bin/python -m pytest

lock: setup  ## refresh requirements/lock.txt to the newest releases pyproject.toml allows
	$(PY) tools/lock.py --upgrade

bench: setup  ## nbtasks against raw ipyparallel, joblib and a serial loop; the notebook UI's cost
	$(PY) bench/run.py
	$(PY) bench/ui.py

lab: setup labext  ## JupyterLab on the tutorials
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) $(LATEST) $(LOWEST) .pytest_cache .hypothesis nbtasks/labextension
	cd labextension && rm -rf node_modules lib lib-test .yarn tsconfig.tsbuildinfo
