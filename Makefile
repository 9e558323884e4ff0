# Two commands: `make demo` (set up, then run the seed experiment) and `make test`.
# torch is pinned: a bare `torch` lets pip pull a multi-GB CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup demo test lint browser bench constraints

setup: $(VENV)/.installed

# constraints.txt pins every package to the version the suite was last run with, so a fresh
# machine installs what CI tested (pyproject.toml keeps the lower bounds a library needs).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)" -c constraints.txt -e ".[dev]"
	touch $@

# After changing a dependency and running the suite green: write the tested versions down.
# torch is left out: it is pinned in the install command above (its local tag, +cpu, names a
# build, not a release).
constraints:
	{ echo "# The versions the test suite passed with: make setup installs with -c constraints.txt."; \
	  echo "# Regenerate with 'make constraints' after a dependency changes and the suite is green."; \
	  $(BIN)/pip freeze --exclude-editable --disable-pip-version-check | grep -v -i '^torch=='; } > constraints.txt

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
