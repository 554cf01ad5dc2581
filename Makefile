# make book    build the site into _build/html (sets up .venv first)
# make test    run every test (sets up .venv first)
# make test-fast  the reference, the grader's core and its views (no book, browser or corpus)
# make grade-demo / notebooks / demo-class: see the README
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: book test test-fast notebooks demo-class grade-demo clean

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The first build also installs MathJax, RequireJS and the widget manager
# with npm (book/_ext/site_assets.py), so the site loads nothing from a CDN.
book: $(VENV)/.installed
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow and not learner_env"

notebooks: $(VENV)/.installed
	$(PY) -m autograder notebooks

demo-class: $(VENV)/.installed
	$(PY) -m autograder demo

grade-demo: $(VENV)/.installed
	$(PY) -m autograder grade demo/submitted --out _build/demo-grades

clean:
	rm -rf _build
