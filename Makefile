# The course in two commands: `make lab` and `make test`. Everything else is for authors.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
KERNEL := course
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
CELL_TIMEOUT ?= 300
# OpenMP spin-waiting makes torch 10-30x slower on a busy 2-core machine (see helpers/__init__.py)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help setup lab test test-unit test-notebooks notebooks lint lock bench clean

help:
	@echo "make lab        open the course in JupyterLab (sets up .venv first if needed)"
	@echo "make test       unit tests + strict nbval on every notebook"
	@echo "make notebooks  re-execute every notebook in place (authors: after any change)"
	@echo "make lint       ruff over helpers, tests and notebooks"
	@echo "make lock       re-resolve pyproject ranges into requirements.lock"
	@echo "make bench      run the course's measurements (results/ + README table)"

setup:
	@PYTHON=$(PYTHON) scripts/setup_venv.sh

lab: setup
	@$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Course (Python 3.11)" >/dev/null
	@echo "Starting JupyterLab on 127.0.0.1 (open the URL with the token printed below)"
	@cd notebooks && ../$(VENV)/bin/jupyter lab --ip=127.0.0.1 --no-browser \
	    --IdentityProvider.token="$${JUPYTER_TOKEN:-$$(../$(PY) -c 'import secrets; print(secrets.token_hex(24))')}" \
	    $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

test: setup test-unit test-notebooks

test-unit:
	$(PY) -m pytest tests -q

test-notebooks:
	$(PY) -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
	    --nbval-cell-timeout=$(CELL_TIMEOUT) -p no:cacheprovider $(NOTEBOOKS)

notebooks: setup
	$(PY) scripts/run_notebooks.py $(NOTEBOOKS)

lint: setup
	$(VENV)/bin/ruff check helpers tests notebooks scripts

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e ".[dev]"
	{ sed -n '1,4p' requirements.lock; .lock-venv/bin/pip freeze --all --exclude-editable | grep -vE '^(-e|pip==)'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv
	@echo "requirements.lock updated; run 'make setup'"

bench: setup
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache **/__pycache__
