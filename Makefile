# make demo | make test | make lint — each sets up its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The constraints file keeps pip on the CPU wheel of torch where no GPU build is wanted.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
CORES ?= 2

.PHONY: demo test lint venv clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES)
	@echo
	@cat results/demo/eqtl/tables/vep_auroc.md
	@echo
	@echo "Results: results/demo/eqtl/ (tables/, figures/vep_auroc.png, provenance.json), results/demo/demo_vcf/scores/ (the scored VCF); logs in results/demo/logs/"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q --durations=25

lint: $(VENV)/.installed-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/ruff check .

clean-demo:
	rm -rf results/demo .snakemake
