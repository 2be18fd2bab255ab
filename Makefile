# ormcache_redis developer targets. `make install` once, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYLIB := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
export LD_LIBRARY_PATH := $(PYLIB):$(LD_LIBRARY_PATH)

.PHONY: install build test test-rust test-python bench demo lint fmt clean

install:
	bash scripts/setup.sh

build:
	$(VENV)/bin/maturin develop --release --quiet

test: test-rust test-python

test-rust:
	cargo test --quiet

test-python: build
	$(PY) -m pytest

bench: build
	$(PY) bench/run.py

demo: build
	$(PY) demo/dashboard.py

lint:
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests bench demo odoo_addon scripts
	$(VENV)/bin/ruff format --check python tests bench demo odoo_addon scripts

fmt:
	cargo fmt
	$(VENV)/bin/ruff format python tests bench demo odoo_addon scripts

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
