# The two commands of README.md, and the checks CI runs before the tests.
VENV ?= .venv
export HOTPATH_VENV := $(VENV)
BIN := $(VENV)/bin

.PHONY: demo test check bench bench-guard setup setup-kafka setup-bench

demo: setup            ## run the whole path on the embedded broker (Tansu) and redis-server
	$(BIN)/hotpath demo $(ARGS)

test: setup-kafka      ## the test suite, on real Apache Kafka and Redis started by the tests
	$(BIN)/python -m pytest $(ARGS)

check: setup           ## lint, types, import layering
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup-bench     ## every benchmark: benchmarks/results/*.json and the README table
	$(BIN)/python -m benchmarks all $(ARGS)

bench-guard: setup-bench  ## the CI guard: short runs, same-run ratios against floors
	$(BIN)/python -m benchmarks all --quick $(ARGS)

setup:
	deploy/setup.sh

setup-kafka:
	deploy/setup.sh --kafka

setup-bench:
	deploy/setup.sh --kafka --bench
