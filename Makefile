# Two commands: `make demo` (set up, then run the seed experiment) and `make test`.
# torch is pinned: a bare `torch` lets pip pull a multi-GB CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup demo test lint browser bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)" -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/assocmem run examples/masha.toml --attention

# Chromium (Debian's package) drives the end-to-end browser test; without it that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed: the browser test will skip"

test: setup browser
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
