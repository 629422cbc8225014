# Two commands on a fresh machine:
#   make run DATA_DIR=../shared/data   # set up .venv (CPU torch) and run suites/glue.yaml
#   make test                          # set up .venv and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SUITE ?= suites/glue.yaml
DATA_DIR ?= $(COMPRESSBENCH_DATA_DIR)
STAMP := $(VENV)/.installed

.PHONY: setup run test bench docs clean

EXAMPLES := examples/compressbench-drop-layers examples/compressbench-multilabel \
            examples/compressbench-choice examples/compressbench-isolated \
            examples/compressbench-autocast

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(EXAMPLES))
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: a CPU wheel; unpinned, pip may pull GBs of CUDA packages
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,torchao,onnx,openvino,ray,tensorboard,mlflow]"
	$(BIN)/pip install -q $(addprefix -e ,$(EXAMPLES))
	touch $@

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/compressbench run $(SUITE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)
	# two processes (one per core), each test file in one of them (its module fixtures once)
	COMPRESSBENCH_DATA_DIR=$(or $(DATA_DIR),../shared/data) $(BIN)/pytest -q -n 2 --dist loadfile \
	    tests $(addsuffix /tests,$(EXAMPLES))

bench: $(STAMP)
	COMPRESSBENCH_DATA_DIR=$(or $(DATA_DIR),../shared/data) $(BIN)/pytest benchmarks --benchmark-only -s

docs: $(STAMP)  # docs/api.md, generated from the docstrings (a test checks it is current)
	$(BIN)/python -m compressbench.apidoc > docs/api.md

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks
