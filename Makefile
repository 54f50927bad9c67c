# rsbench — the two set-up commands are `make demo` and `make test` (each installs first).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch/torchvision as this project is tested with; override for another build, e.g. TORCH="torch torchvision"
TORCH   ?= torch==2.14.1 torchvision==0.29.1
# Real datasets (MNIST, CIFAR-10 sample) for the reproductions; the demo and tests need none.
export RSBENCH_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test test-slow lint figures reproduce-engine bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: install                 ## train (once) and certify the default model on the embedded MNIST subset
	$(BIN)/rsbench certify

lint: install
	$(BIN)/ruff check rsbench tests $(wildcard scripts/*.py)

test: install lint            ## the default test suite (what CI runs)
	$(BIN)/python -m pytest -q

test-slow: install            ## long reproductions, not in CI
	$(BIN)/python -m pytest -q -m slow

reproduce-engine: install     ## docs/REPRODUCTION.md, engine section: CNN on full MNIST, sigma=0.25
	$(BIN)/rsbench train experiment=cohen_mnist
	$(BIN)/rsbench certify experiment=cohen_mnist "model.checkpoint=outputs/train/experiment-cohen_mnist/model.pt" \
		hydra.run.dir=outputs/reproduce/engine_mnist
	$(BIN)/rsbench plot runs=[outputs/reproduce/engine_mnist] hydra.run.dir=outputs/reproduce/engine_mnist/plot \
		"title='Gaussian RS, MNIST CNN, sigma=0.25 (quick scale)'"

figures: reproduce-engine     ## every paper figure that is implemented so far

bench: install
	@echo "no benchmark yet (issue: certification at the speed of the base model)"; exit 1

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
