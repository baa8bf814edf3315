# The two commands of the README: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-avx512-emulated lint bench setup clean

$(STAMP): pyproject.toml setup.py $(wildcard cython_kernels/*.pyx cython_kernels/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/walle run examples/item_page_view.py

# A compiled or OpenCL backend that failed to install is a failure, not a silent skip.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	@# The dashboard's browser test drives Debian's Chromium through playwright (never its own
	@# download); `walle plan --format svg` is tested through graphviz and through its own writer.
	test -x /usr/bin/chromium -a -x /usr/bin/dot || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver graphviz)
	WALLE_REQUIRE_BACKENDS=cython,opencl $(BIN)/python -m pytest -n 2

# The AVX-512 level's kernel code and its tests on a CPU without AVX-512 (tests/avx512_emulated.py).
test-avx512-emulated: $(STAMP)
	$(BIN)/python tests/avx512_emulated.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/streams_bench.py

clean:
	rm -rf $(VENV) build walle/_kernels/*.so walle/_kernels/*.c
