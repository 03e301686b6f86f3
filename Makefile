# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# No hub at run time: an accidental download fails at once instead of hanging.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false
export TRANSFORMERS_VERBOSITY := error

.PHONY: demo test venv browser clean

# torch first, pinned by constraints.txt (an unpinned torch pulls a multi-GB CUDA build), then the
# exact lock; pyproject.toml only states ranges, so the package itself goes in with --no-deps.
$(VENV)/.installed: pyproject.toml requirements.lock constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip==26.3 setuptools==84.2.1
	$(PIP) install -c constraints.txt torch
	$(PIP) install -c constraints.txt -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

# Debian's Chromium + ChromeDriver for the real-browser UI test (which fails under `make test` without them).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make browser: Chromium is missing and installing it needs root; run: sudo make browser"; fi

demo: venv
	$(PY) -m pipelines.run --config configs/tiny/pipeline.yaml

# RLHF_REQUIRE_BROWSER=1: the browser test fails (not skips) when Chromium is missing.
test: venv browser
	RLHF_REQUIRE_BROWSER=1 $(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
