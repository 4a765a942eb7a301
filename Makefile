# make demo | make test | make lint — each sets up its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The constraints file keeps pip on the CPU wheel of torch where no GPU build is wanted.
PIP_INSTALL := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
# torch comes first, from pip: pip reads the machine's pip configuration (a local CPU wheel, find-links,
# mirrors), uv does not. uv then installs the rest, resolving and unpacking in parallel: about 1.5 min
# where pip alone took about 6 (compiled bytecode either way: PYTHONDONTWRITEBYTECODE machines would
# otherwise recompile every module at every job's start). pip does it when uv cannot be had.
UV_INSTALL := $(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt
CORES ?= 2
# Test processes (pytest-xdist): the workflow runs of the suite spend part of their time waiting
# (Slurm's scheduler and time limits, one-job phases), which a second worker fills (three were slower).
TEST_WORKERS ?= 2

.PHONY: demo test lint venv clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: constraints.txt | $(BIN)/python
	$(PIP_INSTALL) torch uv
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.torch
	$(UV_INSTALL) -e . || $(PIP_INSTALL) -e .
	touch $@

# The test extras in one step (not after a plain install: one resolve, one build of the scan kernel).
$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.torch
	$(UV_INSTALL) -e '.[test]' || $(PIP_INSTALL) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES)
	@echo
	@cat results/demo/eqtl/tables/vep_auroc.md
	@echo
	@echo "Results: results/demo/eqtl/ (tables/, figures/vep_auroc.png, provenance.json), results/demo/demo_vcf/scores/ (the scored VCF); logs in results/demo/logs/"

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

lint: $(VENV)/.installed-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/ruff check .

clean-demo:
	rm -rf results/demo .snakemake
