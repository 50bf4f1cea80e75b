# The two commands of the README: `make demo` and `make test` (ruff, mypy, then the suite). Both do
# all set-up first.
.PHONY: setup demo test lint

setup:
	@scripts/bootstrap.sh

demo: setup
	.venv/bin/maillage up --simulate

test: setup
	.venv/bin/ruff check maillage tests
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests

lint: setup
	.venv/bin/ruff check maillage tests
	.venv/bin/mypy
