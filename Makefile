# The commands the README names. Each starts with `make setup`, which is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch goes in first and alone: a torch requirement that 2.13.0 does not satisfy would pull
# CUDA builds (gigabytes) onto a CPU machine. On a GPU machine set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0
# Local copies of the datasets, used when the hub is unreachable (configurable, never hard-coded in code).
export RLVR_DATA_DIR ?= $(abspath ../shared/data)
DEMO_DIR ?= runs/demo

.PHONY: setup test test-slow lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

demo: setup
	bash scripts/demo.sh $(DEMO_DIR)

bench: setup  # the test extra already holds TRL
	$(PY) benchmarks/grpo_step.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
