# One place for setup. `make demo` and `make test` are the README's two commands.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned in the same command: here it resolves to the local CPU wheel, not a 3 GB CUDA build
	$(BIN)/pip install -q "torch==2.13.0" -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/observe-r1 demo --out demo/

test: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/python -m pytest tests --doctest-modules src/observe_r1

# Everything but the tests marked slow (multi-process, kill -9, end-to-end): under a minute.
test-fast: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/python -m pytest tests --doctest-modules src/observe_r1 -m "not slow"

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info
