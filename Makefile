# tokenworks: two commands on a fresh machine.
#   make bench   set up .venv, install everything, run the default (quick) benchmark suites
#   make test    set up .venv, install everything, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_ARGS ?= --quick

.PHONY: bench test install data readme clean-venv

install: $(STAMP)

# torch is pinned here (not in pyproject, which keeps torch>=2.4 for users): the CPU wheel of
# 2.13.0 lies on these machines' disk, while a looser pin pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	./scripts/install-system-data.sh
	touch $(STAMP)

data:
	./scripts/install-system-data.sh

bench: $(STAMP)
	$(BIN)/tokenworks bench $(BENCH_ARGS)
	$(BIN)/tokenworks readme
	@echo "Report: reports/latest/report.md"

test: $(STAMP)
	$(BIN)/python -m pytest -q

readme: $(STAMP)
	$(BIN)/tokenworks readme

clean-venv:
	rm -rf $(VENV)
