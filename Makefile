# The two commands of the README: `make demo` and `make test` (ruff, then the suite). Both do all set-up first.
.PHONY: setup demo test lint

setup:
	@scripts/bootstrap.sh

demo: setup
	.venv/bin/maillage up --simulate

test: setup
	.venv/bin/ruff check maillage tests
	.venv/bin/python -m pytest -q -p no:cacheprovider tests

lint: setup
	.venv/bin/ruff check maillage tests
