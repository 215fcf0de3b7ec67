# Every target sets itself up: a fresh machine needs only python3 (>= 3.10) and make.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup demo test bench lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,lab]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## run the getting-started tutorial headless and print what it computed
	$(PY) tools/run_notebook.py notebooks/01-getting-started.ipynb

test: setup  ## every test: core, a real local cluster, the tutorials in a real kernel, the browser
	bash tools/system-deps.sh
	$(PY) -m pytest

bench: setup  ## nbtasks against raw ipyparallel, joblib and a serial loop; the notebook UI's cost
	$(PY) bench/run.py
	$(PY) bench/ui.py

lab: setup  ## JupyterLab on the tutorials
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
