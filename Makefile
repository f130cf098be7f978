# Convenience targets; ./dev is the entry point and works without make.
.PHONY: help setup demo test test-fast test-pure lint type golden bench bench-phases wasm wasm-check clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## create or refresh .venv
	./dev setup

demo:  ## compile every example and print the optimization report
	./dev demo

test:  ## lint, type-check and run the whole suite
	./dev test

test-fast:  ## only the test suite, no lint or type check
	.venv/bin/pytest -q

test-pure:  ## the test suite on the pure-Python core (AOBC_PUREPYTHON=1)
	AOBC_PUREPYTHON=1 .venv/bin/pytest -q

lint:  ## ruff
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

type:  ## mypy --strict (on the link tree, where runtime/ is aobc.runtime)
	cd "$$(.venv/bin/python -I -c 'import aobc, pathlib; print(pathlib.Path(aobc.__file__).parent.parent)')" \
		&& $(CURDIR)/.venv/bin/mypy --config-file $(CURDIR)/pyproject.toml -p aobc

golden:  ## rewrite golden files from the current output (review the diff!)
	.venv/bin/pytest tests/golden --update-goldens -q

bench:  ## benchmarks against LangGraph, Dask and Hamilton (in .venv-bench), one table
	./dev bench

bench-phases:  ## pytest-benchmark suites of the compile and runtime phases
	./dev bench --phases

wasm:  ## rebuild the packaged WebAssembly passes from wasm_passes/src (needs the wasm-build extra)
	.venv/bin/python -m aobc.wasm_passes.build

wasm-check:  ## rebuild them elsewhere and check the shipped .wasm match byte for byte
	.venv/bin/python -m aobc.wasm_passes.build --check

clean:  ## remove build outputs
	rm -rf build dist out .pytest_cache .mypy_cache .ruff_cache
