# ldm-lab: `make run` executes every notebook (laptop profile) into build/, `make test` runs the tests, `make lab`
# opens JupyterLab, `make refresh` reruns the notebooks to update the committed figures/ and data/results/.
# Each target sets itself up first: a .venv in this folder, the package, and the datasets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch build to install first (CPU-usable; see README). aarch64 Linux has CPU wheels of an older release.
ifeq ($(shell uname -sm),Linux aarch64)
TORCH ?= torch==2.9.1 torchvision==0.24.1
else
TORCH ?= torch==2.14.1 torchvision==0.29.1
endif
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup data run refresh test lab

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

data: $(STAMP)
	$(VENV)/bin/ldm-lab data fetch

# Executed copies in build/notebooks/PROFILE/, their figures and tables in build/notebooks/PROFILE/{figures,results}.
run: data
	LDM_LAB_PROFILE=$${LDM_LAB_PROFILE:-laptop} $(VENV)/bin/ldm-lab notebooks --out build/notebooks

# The same run, writing the figures and tables to the committed figures/ and data/results/ (review, then commit).
refresh: data
	LDM_LAB_PROFILE=$${LDM_LAB_PROFILE:-laptop} $(VENV)/bin/ldm-lab notebooks --out build/notebooks --refresh-committed

test: data
	$(PY) -m pytest -q $(PYTEST_ARGS)

lab: data
	$(VENV)/bin/jupyter lab notebooks/
