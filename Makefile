# edgeval developer commands. `make setup test` on a fresh machine: create .venv, install, run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup lint test test-all test-onnx-only test-ray demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned and installed first: left to itself pip would resolve a multi-GB CUDA build.
setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'

# ruff (pyflakes, pycodestyle errors, bugbear, import order, complexity <= 10, argument count) and mypy, both
# configured in pyproject.toml and pinned in the [dev] extra. A few seconds once mypy's cache is warm.
lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

# The default suite: everything but the tests marked slow (exports with the dynamo exporter, real models).
test:
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all:
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `edgeval search --executor ray` on a real local Ray instance (ray.init(num_cpus=2)) gives the same front as the
# in-process search on the tiny model. Marked slow (a Ray start and a torch import per worker: 1-6 min on two
# cores), so it runs here, as its own CI step, rather than in the default suite.
test-ray:
	$(BIN)/python -m pytest -m slow tests/test_search_executors.py -k ray $(PYTEST_ARGS)

# Proves the gate-only install: a venv with edgeval[onnx] alone (no torch, transformers or TensorFlow)
# runs `edgeval check` on an ONNX model. The model is built by the main venv first.
test-onnx-only:
	$(BIN)/python tests/onnx_only/build_fixture.py $(VENV)-onnx-fixture
	rm -rf $(VENV)-onnx && $(PY) -m venv $(VENV)-onnx
	$(VENV)-onnx/bin/pip install -q --upgrade pip
	$(VENV)-onnx/bin/pip install -q '.[onnx]' pytest
	$(VENV)-onnx/bin/python tests/onnx_only/check_onnx_only.py $(VENV)-onnx-fixture

# The first thing a new user runs: prune SmolLM2-135M-Instruct (Wanda and magnitude at 30 and 50 %), gate each
# pruned copy (and int8, int4 and Wanda 50 % -> int8 copies) against the dense model, write edgeval-demo/demo.html
# (600 BBQ items in 4 looks; 31 min on a partly loaded 2-core VM, 12.6 min idle without the quantized copies). BBQ data:
# $EDGEVAL_BBQ_DIR, else ../shared/bbq/data when it exists, else the checksummed download. More options:
# make demo DEMO_ARGS="--limit 240 --sparsities 0.2,0.4,0.6"
demo: setup
	@data="$${EDGEVAL_BBQ_DIR:-../shared/bbq/data}"; \
	if [ -d "$$data" ]; then set -- --bbq-data "$$data"; else set --; fi; \
	echo "$(BIN)/edgeval demo $$* $(DEMO_ARGS)"; \
	$(BIN)/edgeval demo "$$@" $(DEMO_ARGS)

# The speed of the BBQ gate against lm-evaluation-harness's bbq task, side by side on this machine (same model,
# same items), and the README's benchmark table rewritten from the result. Installs lm-eval into its own venv in
# the user cache the first time. More options: make bench BENCH_ARGS="--n 192 --repeats 2"
bench: setup
	$(BIN)/python benchmarks/vs_lm_eval.py --bbq-data "$${EDGEVAL_BBQ_DIR:-../shared/bbq/data}" --update-readme $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV)-onnx $(VENV)-onnx-fixture build dist *.egg-info .pytest_cache
