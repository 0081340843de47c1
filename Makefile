# The pipeline. `make all` runs every notebook in order on PROFILE (organism by default); `make test` runs the tests.
# Both create and reuse the virtual environment in .venv by themselves.
#   make all PROFILE=paper MODEL=deepseek-r1-distill-qwen-7b     a real model (GPU and internet)
#   make all PROFILE=smoke                                        tiny settings

PROFILE ?= organism
MODEL ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
BUILD := build/$(PROFILE)$(if $(MODEL),/$(MODEL))
EXECUTED := $(patsubst notebooks/%.py,$(BUILD)/%.ipynb,$(NOTEBOOKS))
LIB := $(shell find lib -name '*.py' -not -path '*/__pycache__/*')

.PHONY: all setup test organism twins lab clean help
.DEFAULT_GOAL := all

all: $(EXECUTED)  ## run every notebook in order (skips those whose inputs did not change)

setup: $(STAMP)  ## create the virtual environment (the other targets do it when needed)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Each executed notebook depends on its source, the profile, the library and the notebook before it:
# later notebooks read the earlier ones' cached results.
define notebook_rule
$(BUILD)/$(notdir $(1:.py=.ipynb)): $(1) params/$(PROFILE).yaml $(LIB) $(2) | $(STAMP)
	$(PY) -m lrmsafety.pipeline run $(1) --profile $(PROFILE) $(if $(MODEL),--model $(MODEL)) --output $$@
endef
$(foreach i,$(shell seq 1 $(words $(NOTEBOOKS))),$(eval $(call notebook_rule,$(word $(i),$(NOTEBOOKS)),$(if $(filter 1,$(i)),,$(word $(shell expr $(i) - 1),$(EXECUTED))))))
# The report (last in the chain, so after every notebook whose tables it reads) also reads the claims ledger.
$(BUILD)/10_report.ipynb: paper/claims.yaml

test: $(STAMP)  ## run the tests (no hub, no GPU)
	$(PY) -m pytest

organism: $(STAMP)  ## train the organisms into data/models/ (a GPU is used when present)
	$(PY) -m lrmsafety.organism.train --kind all --out data/models

twins: $(STAMP)  ## rewrite the .ipynb twins (for Colab) from the .py sources
	$(PY) -m lrmsafety.pipeline sync

lab: $(STAMP)  ## open the notebooks in JupyterLab (paired through jupytext)
	$(PY) -m pip install -q -e ".[lab]" && $(PY) -m jupyter lab notebooks

clean:  ## remove executed notebooks and caches of PROFILE (keeps the organisms and the venv)
	rm -rf build/$(PROFILE) data/cache/$(PROFILE) figures/$(PROFILE)

help:
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/'
