# One command each on a fresh machine: `make demo`, `make test` set themselves up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 comes from the local wheel cache; pin it first so no
	# dependency pulls a newer CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# torch pinned again so no extra's dependency can swap it for another build.
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev,research,titan,data,eval]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python -m bltx.run recipes/tiny.toml

# Two workers (pytest-xdist): much of the suite is subprocess start-up (python -m bltx.run,
# torchrun) and single-threaded Python, which leave the second core idle with one worker.
WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal

# Everything but the `slow` tests (launch matrix, compiled paths, subprocess CLI runs):
# the loop to run while editing. CI runs `make test`.
test-fast: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
