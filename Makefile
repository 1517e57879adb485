# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install_libsndfile.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python scripts/install_libsndfile.py
	$(BIN)/python -c "import fairseq2, lightning, torch; print('installed: torch', torch.__version__)"
	touch $(STAMP)

demo: install
	$(BIN)/bsd demo

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: install
	$(BIN)/bsd bench kernel

clean:
	rm -rf $(VENV) runs .pytest_cache
