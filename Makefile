# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
REPRODUCE_DIR ?= reproduce_out

.PHONY: test test-lower lint format demo reproduce clean

# PyTorch's CUDA build (what pip takes on Linux x86-64) makes .venv about 7.5 GB: say so before pip fails half-way
# with "No space left on device".
NEEDED_KB := 8000000
$(STAMP): pyproject.toml
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ ! -x $(BIN)/python ] && [ "$$free_kb" -lt $(NEEDED_KB) ]; then \
		echo "warning: .venv needs about 7.5 GB (PyTorch's CUDA build); $$((free_kb / 1000000)) GB free here" >&2; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

# Two workers, one test file each at a time, one thread per process: most of the suite is command lines
# starting Python (single-threaded imports), so two at once use both cores; two 2-thread torch processes
# would oversubscribe them. Then the family x method contract tests once more (test-lower).
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=20
	$(MAKE) --no-print-directory test-lower

# The family x method contract tests with the lowest transformers pyproject.toml declares (a venv layered over .venv,
# scripts/lower_bounds.py) and with other CPU kernels than the machine's own: ATen's generic ones and MKL's SSE4.2
# path, which no x86-64 CPU picks by itself. docs/DEVELOPMENT.md: "Versions" and "Tolerances".
LOWER ?= .venv-lower
OTHER_KERNELS := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2
CONTRACT_TESTS := tests/contract/test_adaptvis.py tests/contract/test_clvs.py tests/contract/test_vea.py \
	tests/contract/test_mechanism.py tests/contract/test_neutral.py tests/contract/test_attention_log.py \
	tests/contract/test_pai.py tests/contract/test_vaf.py
test-lower: $(STAMP)
	$(BIN)/python scripts/lower_bounds.py --venv $(LOWER)
	$(OTHER_KERNELS) OMP_NUM_THREADS=1 $(LOWER)/bin/python -m pytest -n 2 --dist loadfile -m "not bfloat16_sdpa" \
		-p no:cacheprovider $(CONTRACT_TESTS)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --out $(DEMO_DIR) $(if $(DEMO_FAST),--fast,)

# The reference study's table (a GPU and the VSR/COCO data; see README "Reproducing the study").
# Extra flags: make reproduce REPRODUCE_ARGS="--test --batch_size 16"; other tasks too: BENCHMARKS=pope,mmmu_val
reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py --out $(REPRODUCE_DIR) $(if $(BENCHMARKS),--benchmarks $(BENCHMARKS),) $(REPRODUCE_ARGS)

clean:
	rm -rf $(VENV) $(LOWER) $(DEMO_DIR) $(REPRODUCE_DIR) .pytest_cache .ruff_cache
