# Two commands for a newcomer: `make run` (the pipeline on the embedded default data) and `make test`.
# Both create .venv on first use and reinstall only when requirements.lock or pyproject.toml change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Upstream SLIM-Diff (slim-diff 1.0.0) beside this package, for the equality fixtures and benchmarks/vs_upstream.py.
UPSTREAM_VENV  := .upstream-venv
UPSTREAM_STAMP := $(UPSTREAM_VENV)/.installed
CORES  ?= all
# GPU-tagged jobs that may run at once: the GPUs to lease times the jobs each may hold (the config's
# gpu.jobs_per_device), or the CPU count on a machine without one (slimdiff.gpu_lease.gpu_slots; the DVC stage
# `compute` asks the same). Read from the config the recipe runs, when the recipe runs; GPU_SLOTS=N sets it.
gpu_slots = $(or $(GPU_SLOTS),$$($(BIN)/python -m slimdiff.gpu_lease $(1) || nproc))
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
# Metric network weights (Inception, LPIPS trunks) are cached inside the project, built once by slimdiff-weights.
export TORCH_HOME ?= $(CURDIR)/.torch_home

.PHONY: run ablation pilot test test-fast test-pipelines test-times test-slurm docs lint dryrun config report clean upstream-env upstream-fixtures vs-upstream

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(UPSTREAM_STAMP): requirements.lock envs/upstream-requirements.txt pyproject.toml
	test -x $(UPSTREAM_VENV)/bin/python || $(PYTHON) -m venv $(UPSTREAM_VENV)
	$(UPSTREAM_VENV)/bin/python -m pip install --disable-pip-version-check -r requirements.lock
	$(UPSTREAM_VENV)/bin/python -m pip install --disable-pip-version-check -r envs/upstream-requirements.txt
	$(UPSTREAM_VENV)/bin/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(UPSTREAM_STAMP)

upstream-env: $(UPSTREAM_STAMP)

# Rebuild the committed test data of tests/test_upstream_import.py and tests/test_metric_parity.py with upstream's
# own code.
upstream-fixtures: $(UPSTREAM_STAMP) $(STAMP)
	$(UPSTREAM_VENV)/bin/python tests/upstream/make_fixtures.py tests/data/upstream
	$(BIN)/slimdiff-weights >/dev/null  # the LPIPS trunk in $(TORCH_HOME), for upstream's LPIPS too
	$(UPSTREAM_VENV)/bin/python tests/upstream/make_metric_fixtures.py tests/data/upstream/metrics

# This project against upstream on the same machine: writes results/benchmarks/vs_upstream.json.
# VS_UPSTREAM_ARGS passes options, e.g. "--threads 1,2" or "--models small --quick".
vs-upstream: $(UPSTREAM_STAMP)
	$(UPSTREAM_VENV)/bin/python benchmarks/vs_upstream.py --out results/benchmarks/vs_upstream.json $(VS_UPSTREAM_ARGS)

# After a kill: a lock left by the dead Snakemake is removed (only when nothing of this directory still runs),
# incomplete outputs rerun (profiles/default: rerun-incomplete) and trainings resume from last.ckpt.
run: $(STAMP)
	@python -m slimdiff.workflow_lock
	@start=$$(date +%s); \
	snakemake --cores $(CORES) --resources gpu=$(call gpu_slots,config/config.yaml) --configfile config/config.yaml && \
	snakemake --cores 1 --configfile config/config.yaml --report results/report.html && \
	mkdir -p results/benchmarks && echo "$$(( $$(date +%s) - start )) s, pipeline and report" > results/benchmarks/make_run_seconds.txt
	@cat results/paper/table.md
	@python benchmarks/stage_times.py
	@echo "Report: $(CURDIR)/results/report.html"

# Table 1's prediction-type x Lp grid at the default's scale on the CPU (under an hour on 2 cores from scratch).
ablation: $(STAMP)
	@python -m slimdiff.workflow_lock
	snakemake --cores $(CORES) --resources gpu=$(call gpu_slots,config/ablation-cpu.yaml) --configfile config/ablation-cpu.yaml
	@cat results/paper/table.md

# The paper grid executed for real at the paper's geometry with small counts (config/pilot.yaml), in its own
# folder results/pilot; ends with the rule check and results/pilot/report.md (measured cost per rule, the full
# grid's extrapolated cost), also on the front page of results/pilot/report.html. RAW_DIR=path runs it on your
# cohort instead of a generated one (docs/how-to/pilot.md).
PILOT_DIR    := results/pilot
PILOT_CONFIG ?= config/pilot.yaml
# Memory the pilot's jobs may hold at once: Snakemake starts a job only while the mem_mb requests (the `cluster`
# section's) of the running ones fit. A training at the paper's geometry takes up to 7 GB on a CPU in bf16 (two
# fit a 24 GB machine side by side) and up to 15 GB in float32 (one, beside a sampling job); the camera-ready
# runs train on the paper's 2 DDP ranks where twice the request fits (slimdiff-pilot prepare decides). Default:
# 90 % of the memory available at the start, read once (prepare and Snakemake see the same number);
# PILOT_MEM_MB=N sets it.
ifndef PILOT_MEM_MB
PILOT_MEM_MB := $(shell awk '/^MemAvailable:/ {print int($$2 / 1024 * 0.9)}' /proc/meminfo 2>/dev/null)
endif
pilot: $(STAMP)
	@python -m slimdiff.workflow_lock $(PILOT_DIR)
	slimdiff-pilot prepare --config $(PILOT_CONFIG) --workdir $(PILOT_DIR) $(if $(RAW_DIR),--raw-dir $(abspath $(RAW_DIR))) $(if $(PILOT_MEM_MB),--mem-mb $(PILOT_MEM_MB))
	snakemake --directory $(PILOT_DIR) --cores $(CORES) --resources gpu=$(call gpu_slots,$(PILOT_DIR)/config.yaml) $(if $(PILOT_MEM_MB),mem_mb=$(PILOT_MEM_MB)) --configfile $(PILOT_DIR)/config.yaml
	slimdiff-pilot report --workdir $(PILOT_DIR) --command "make pilot$(if $(filter-out config/pilot.yaml,$(PILOT_CONFIG)), PILOT_CONFIG=$(PILOT_CONFIG))$(if $(RAW_DIR), RAW_DIR=$(RAW_DIR))$(if $(filter command line environment,$(origin PILOT_MEM_MB)), PILOT_MEM_MB=$(PILOT_MEM_MB))"
	snakemake --directory $(PILOT_DIR) --cores 1 --configfile $(PILOT_DIR)/config.yaml --report $(CURDIR)/$(PILOT_DIR)/report.html

dryrun: $(STAMP)
	snakemake -n --configfile config/config.yaml

# The config a run would use, resolved as Snakemake resolves it: `make config CONFIG=config/paper.yaml`.
CONFIG ?= config/config.yaml
config: $(STAMP)
	slimdiff-config $(CONFIG)

lint: $(STAMP)
	ruff check .
	ruff format --check .
	snakemake --lint

# --dist loadfile: a module's tests on one worker, so its module-scoped fixtures (a trained run, a finished
# project) are built once. (pytest 9 ignores the node ids pytest-xdist 3.8 rewrites for --dist loadgroup: its
# xdist_group marks no longer group anything; every group here lies within one module.)
# make test: lint, every unit test, and one tiny project run to the end by `dvc repro` (every rule of the default
# DAG) with the checks that read it: its outputs, the rerun contract, the report. make test-pipelines: the longer
# scenarios over whole tiny pipelines (marker `scenario`): that project killed twice and resumed, pushed and
# cloned through a DVC remote; Regime B's two folds, 2-rank DDP through DVC, an imported checkpoint. CI runs both.
test: lint
	pytest -n 2 --dist loadfile -m "not slurm and not scenario" tests

test-pipelines: $(STAMP)
	pytest -n 2 --dist loadfile -m "scenario and not slurm" tests

# Times test, test-fast and test-pipelines one after the other and writes docs/results/test-times.md (run it in
# a fresh clone on idle cores).
test-times: $(STAMP)
	python benchmarks/test_times.py

# The inner loop: the tests that take under ~2 s each (not the `pipeline`, `slow` or `slurm` markers).
test-fast: $(STAMP)
	pytest -n 2 --dist loadfile -m "not slurm and not pipeline and not slow" tests

# The configuration reference page, regenerated from config/schema.yaml (a test fails when it is stale).
docs: $(STAMP)
	python -m slimdiff.config_reference

# The tiny pipeline through `snakemake --profile slurm` on a real local SLURM (root; CI runs it after `test`).
test-slurm: $(STAMP)
	pytest -m slurm tests

report: $(STAMP)
	snakemake --cores 1 --report results/report.html

clean:
	rm -rf results .snakemake
