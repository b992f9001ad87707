# The two commands of README.md, and the checks CI runs before the tests.
VENV ?= .venv
export HOTPATH_VENV := $(VENV)
BIN := $(VENV)/bin

.PHONY: demo test check setup setup-kafka

demo: setup            ## run the whole path on the embedded broker (Tansu) and redis-server
	$(BIN)/hotpath demo $(ARGS)

test: setup-kafka      ## the test suite, on real Apache Kafka and Redis started by the tests
	$(BIN)/python -m pytest $(ARGS)

check: setup           ## lint, types, import layering
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup:
	deploy/setup.sh

setup-kafka:
	deploy/setup.sh --kafka
