# Two commands for a fresh Debian/Ubuntu machine:  make demo   and   make test
# Both create .venv, install the package (CPU torch pinned when there is no GPU), install the
# Debian packages they need (as root, or via sudo; otherwise they say which), then run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel this project is tested with; an unpinned torch would pull a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0
JOBS ?= $(shell nproc)  # Snakemake's cores: the machine's

.PHONY: demo study test setup system lint clean

demo: setup  # the rules call whisper-spi: the venv's bin must be on PATH for the jobs
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local -j $(JOBS)

study: setup  # 48 min on 2 cores (README "The study"); results in results-study/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --profile profiles/local -j $(JOBS) \
	  --configfile config/study.yaml

test: setup
	scripts/system-packages.sh test
	$(BIN)/pytest

setup: $(VENV)/.installed
	scripts/system-packages.sh demo
	scripts/register-profiles.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: torch will come from PyPI's default (CUDA) build"; \
	else \
	  $(BIN)/pip install --quiet "$(TORCH_CPU)"; \
	fi
	$(BIN)/pip install --quiet -e '.[demo,test]'
	touch $@

lint: setup
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

clean:  # logs and benchmarks live under results/ (the study's under results-study/)
	rm -rf results results-study .snakemake report.zip
