# Optimas CLI. `make install` then `make test`; `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1

.PHONY: help install test test-fast lint bench-lm bench bench-dev bench-rewards bench-rewards-data reproduce reproduce-record reliability demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/optimas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev,bigcodebench,ray,submitit,mlflow]'
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -qq bubblewrap >/dev/null 2>&1 && echo "installed bubblewrap (sandbox: bwrap mode)"; } || \
	  echo "sandbox: bubblewrap is not installed, so model-written code runs in rlimits mode (README: 'The sandbox'); for bwrap mode: sudo apt-get install bubblewrap"
	@touch $@

install: $(BIN)/optimas  ## create .venv and install optimas with its dev tools and extras (compiles llama.cpp once, ~6 min)

test: install  ## the whole suite, slow end-to-end tests with the real embedded model included
	$(BIN)/pytest -n 2 --durations=15

test-fast: install  ## logic tests only (scripted LM), seconds
	$(BIN)/pytest -n 2 -m "not slow"

lint: install  ## ruff
	$(BIN)/ruff check optimas_cli systems tests bench

bench-lm: install  ## LM engine throughput benchmark -> BENCHMARKS.md figures
	$(BIN)/python bench/lm_throughput.py

BENCH_METHODS ?= none,largest,single,optimas,search,llmselector,mipro,gepa
BENCH_SEEDS ?= report
BENCH_CONFIGS ?= hotpotqa pubmedqa bigcodebench amazon
bench: install  ## the benchmark protocol (issue #29): every method x the report seeds, each seed its own split -> BENCHMARKS.md (days; resumable)
	@for b in $(BENCH_CONFIGS); do $(BIN)/python bench/run.py --config configs/bench/protocol/protocol_$$b.yaml \
	  --methods $(BENCH_METHODS) --seeds $(BENCH_SEEDS) || exit 1; done

bench-dev: install  ## the same on the dev seeds (100, 101): judge loop changes here; never written to BENCHMARKS.md
	$(MAKE) bench BENCH_SEEDS=dev

REWARD_TASKS ?= $(shell $(BIN)/python -c "import yaml;print(' '.join(yaml.safe_load(open('bench/rewards/tasks.yaml'))))")
# qwen15: hours of Qwen 1.5B passes on a machine without the feature cache; REWARD_BLOCKS="lexical
# minilm" reports the zero-shot and scalar designs from the scalars kept in bench/rewards/data/
REWARD_BLOCKS ?= lexical minilm qwen15
bench-rewards-data: install  ## collect the reward benchmark's rollouts (hours, resumable, once: the data is kept in bench/rewards/data/)
	$(BIN)/python bench/rewards/collect.py --all

bench-rewards: install  ## local reward designs cross-validated on the kept rollouts -> BENCHMARKS.md ("Local reward designs")
	@for t in $(REWARD_TASKS); do test -f bench/rewards/data/$$t.jsonl.gz || continue; \
	  for b in $(REWARD_BLOCKS); do $(BIN)/python bench/rewards/features.py $$t --block $$b || exit 1; done; done
	$(BIN)/python bench/rewards/evaluate.py --available --curve --out bench/rewards/results.json
	$(BIN)/python bench/rewards/report.py bench/rewards/results.json --write

reliability: install  ## fault, kill -9, fuzzing, secrets and Ray tests -> BENCHMARKS.md figures (~6 min)
	$(BIN)/python bench/reliability.py

reproduce: install  ## replay the pinned benchmark from bench/reproduce/ (no model calls); fail on drift
	$(BIN)/python bench/reproduce.py

reproduce-record: install  ## call the models again and rewrite bench/reproduce/ (cache + expected table)
	$(BIN)/python bench/reproduce.py --record

demo: install  ## the main job on the embedded default
	$(BIN)/optimas run configs/hotpotqa.yaml

clean:  ## remove the venv and caches (not runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
