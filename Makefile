# The two commands of the README. Both build the environment on first use
# (cached under ~/.cache/clbench, about 3 minutes once) and then run.
SHELL := /bin/bash
VENV = $(shell bash scripts/ensure_env.sh)

.PHONY: run test lint bench check leaderboard

run:            ## fetch the offline assets, then SimpleCIL on emoji-cil
	@venv=$(VENV) && $$venv/bin/clbench setup && $$venv/bin/clbench run $(ARGS)

test:           ## the whole test suite (unit + integration on the real offline assets)
	@venv=$(VENV) && bash scripts/ensure_test_deps.sh && $$venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	@venv=$(VENV) && $$venv/bin/python -m ruff check . && $$venv/bin/python -m ruff format --check .

bench:          ## cold vs warm vs reference-way feature extraction timings
	@venv=$(VENV) && $$venv/bin/python benchmarks/feature_cache.py

check:          ## the regression gate: leaderboards/expected.csv against stored (or new) runs
	@venv=$(VENV) && $$venv/bin/clbench check $(ARGS)

leaderboard:    ## the static site from the stored runs, in leaderboards/site/
	@venv=$(VENV) && $$venv/bin/clbench leaderboard $(ARGS)
