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

.PHONY: setup data run refresh test lab compression-ablation sd-versions

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

# The compression ablation retrained from scratch (notebooks 02 and 03, LDM Tab. 8, Fig. 6, Fig. 7): twelve first
# stages and LDM-{1..32}, the same steps each (LDM_LAB_PROFILE's), shipped to data/checkpoints with their CPU
# minutes in the manifest; then, from the run folders, the curve of every kept checkpoint, the sampling trade-off
# and the sample grids, replacing the committed ones. Laptop profile on a 2-core CPU: about 3 hours.
ABLATION_RUNS ?= build/runs/compression
FACTORS := 1 2 4 8 16 32
GRID_STEPS ?= 250 1500  # the first and the last kept checkpoint of a laptop run
compression-ablation: data
	$(VENV)/bin/ldm-lab ship $(foreach r,kl vq,$(foreach f,$(FACTORS),lab-$(r)-f$(f))) \
		$(foreach f,$(FACTORS),lab-ldm-$(f)) --jobs 2 --runs $(ABLATION_RUNS)
	rm -f data/results/compression_ablation.csv data/results/compression_sampling.csv
	$(VENV)/bin/ldm-lab compression-curve $(foreach f,$(FACTORS),$(ABLATION_RUNS)/lab-ldm-$(f)) \
		--num-samples 512 --resamples 200 --out data/results/compression_ablation.csv
	$(VENV)/bin/ldm-lab compression-sampling $(foreach f,$(FACTORS),$(ABLATION_RUNS)/lab-ldm-$(f)) \
		--num-samples 64 --out data/results/compression_sampling.csv
	$(VENV)/bin/ldm-lab compression-grids $(foreach f,$(FACTORS),$(ABLATION_RUNS)/lab-ldm-$(f)) --steps 250 1500 \
		--out data/results/compression_ablation_grids.png

# The Stable Diffusion versions in miniature (notebook 05), retrained from scratch: the SD1-, SD2- (and its zero-
# terminal-SNR twin) and SDXL-like models at matched steps and the inpainting model fine-tuned from the SD1-like
# one, shipped to data/checkpoints; then the v1.x lineage (32², 64², caption dropout), whose stages are measured
# where they trained (the model cards' FID-vs-CLIP-score curves) and not shipped. Laptop profile, 2-core CPU:
# about 1 h 30 min.
SD_RUNS ?= build/runs/sd-versions
sd-versions: data
	$(VENV)/bin/ldm-lab ship lab-sd1-like lab-sd2-like lab-sd2-like-ztsnr lab-sdxl-like lab-sd1-inpaint --jobs 2 \
		--runs $(SD_RUNS)
	$(VENV)/bin/ldm-lab train lab-sd1-32px --first-stage lab-autoencoder --out $(SD_RUNS)/lab-sd1-32px
	$(VENV)/bin/ldm-lab train lab-sd1-64px --init-from $(SD_RUNS)/lab-sd1-32px --out $(SD_RUNS)/lab-sd1-64px
	$(VENV)/bin/ldm-lab train lab-sd1-cfg --init-from $(SD_RUNS)/lab-sd1-64px --out $(SD_RUNS)/lab-sd1-cfg
	$(VENV)/bin/ldm-lab sd-lineage $(foreach s,32px 64px cfg,$(SD_RUNS)/lab-sd1-$(s)) --out data/results/sd_lineage.csv
