# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv

.PHONY: demo test check bench install install-all constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv

# constraints.txt pins the exact versions CI and `make` were tested with (pyproject.toml keeps
# ranges); regenerate it with `make constraints` after changing a dependency.
CONSTRAINTS := -c constraints.txt

# Bytecode is written once, at install: where PYTHONDONTWRITEBYTECODE is set (as on some CI
# machines) every driftloop process would otherwise compile scikit-learn, pandas ... again.
COMPILE := --compile-bytecode

# What the demo needs: the server extra (embedded defaults, no services).
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(UV) pip install --quiet $(COMPILE) --python $(BIN)/python $(CONSTRAINTS) -e '.[server]'
	touch $@

# Everything: all extras (Kafka, PostgreSQL, S3, transformers, notebook) and the dev tools.
$(VENV)/.installed-all: pyproject.toml constraints.txt | $(BIN)/python
	$(UV) pip install --quiet $(COMPILE) --python $(BIN)/python $(CONSTRAINTS) -e '.[all,dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-all: $(VENV)/.installed-all

demo: install
	$(BIN)/driftloop demo $(DEMO_ARGS)

check: install-all
	scripts/check

test: install-all
	scripts/check
	scripts/smoke-wheel
	scripts/test

constraints: | $(BIN)/python
	$(UV) pip compile --quiet pyproject.toml --all-extras --python-version 3.11 -o constraints.txt

# BentoML, the serving benchmark's competitor, lives in its own venv: not a driftloop dependency.
BENTOML_VENV ?= .venv-bentoml
$(BENTOML_VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PYTHON) -m venv $(BENTOML_VENV)
	$(UV) pip install --quiet --python $(BENTOML_VENV)/bin/python 'bentoml>=1.4.40' -e '.[transformers]'
	touch $@

# NannyML, the estimated-accuracy benchmark's competitor, in its own venv too; benchmarks/
# nannyml_cbpe.py runs in it on files (nannyml 0.13.1 imports statsmodels without requiring it).
NANNYML_VENV ?= .venv-nannyml
$(NANNYML_VENV)/.installed: | $(BIN)/python
	$(PYTHON) -m venv $(NANNYML_VENV)
	$(UV) pip install --quiet --python $(NANNYML_VENV)/bin/python 'nannyml>=0.13.1' statsmodels
	touch $@

bench: install-all $(BENTOML_VENV)/.installed $(NANNYML_VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .services .driftloop demo-out
