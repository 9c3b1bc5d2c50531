# Two entry points do all setup on a fresh machine:  `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.xpe-bench-installed

.PHONY: setup demo test lint lock clean-venv

setup: $(STAMP)

# torch is pinned (2.13.0): an unpinned torch would pull gigabytes of CUDA packages on a CPU machine.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	$(BIN)/xpe-bench prepare me5-small
	touch $(STAMP)

# The main job: soft-prompt tuning on the 7 Joshi-5 languages of SIB-200, evaluated on two languages of every
# Joshi class (plus two unclassified), on the embedded multilingual-e5-small, CPU budget `quick`. `auto`
# keeps quick's bf16 where the CPU has bf16 instructions and computes in fp32 where it has not (AVX2 only),
# where bf16 would take about a minute a step (xpe_bench/numerics.py).
demo: setup
	$(BIN)/xpe-bench run --task sib200 --method spt --sources joshi5 --targets showcase --budget quick \
	  --precision auto --frozen-backbone-dtype auto

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

lock: setup
	(echo "# Exact versions the project is tested with; used as pip constraints by the Makefile (make lock refreshes it)."; \
	 $(PY) -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/') > requirements.lock

clean-venv:
	rm -rf $(VENV)
