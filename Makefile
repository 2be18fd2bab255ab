# ormcache_redis developer targets.
#   make demo    set everything up (redis-server, venv, release build) and run the demo
#   make test    set up if needed, then run every test (Rust units + pytest on a real Redis)
#   make bench   ratios against baselines measured side by side (ODOO=tree: and real Odoo's)
#   make lint    cargo fmt, clippy -D warnings, ruff, stubtest (the .pyi against the built module),
#                pylint-odoo and oca-checks-odoo-module on the addons for each Odoo series
#   make wheel   release artefacts in dist/: manylinux_2_17 abi3 wheels (zig), the sdist and
#                the addon's wheels odoo-addon-ormcache_redis for Odoo 17.0, 18.0 and 19.0
#   make addon-readme  the addons' README.rst from their readme/*.md (OCA's layout)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PYLIB := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
# `cargo test` embeds the interpreter: let it find libpython.
export LD_LIBRARY_PATH := $(PYLIB):$(LD_LIBRARY_PATH)
RUFF_PATHS := $(wildcard python tests bench demo examples odoo_addon scripts)

.PHONY: install build test test-rust test-python bench demo lint lint-addons fmt clean wheel addon-readme

$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

install: $(STAMP)

build: $(STAMP)
	@echo "build: the extension, release with LTO (a minute or two after a Rust change)"
	$(VENV)/bin/maturin develop --release --quiet

test: test-rust test-python

# cargo shows what it compiles; the test harness prints dots.
test-rust:
	@echo "test-rust: building and running the Rust unit tests (first build: a few minutes)"
	cargo test -- --quiet

test-python: build
	@echo "test-python: pytest against a real redis-server"
	$(PY) -m pytest

# The chart needs matplotlib (`pip install --group chart`); without it, a
# message and the table only. With ODOO=/path/to/odoo (a 17/18/19 source
# tree), also real Odoo's rows (bench/odoo_rows.py): ODOO_PYTHON runs Odoo,
# ODOO_DB (default ormcache_bench_<major>, created if missing) lives on
# ODOO_POSTGRES.
BENCH_CHART := docs/images/bench_ratios.png
ODOO ?=
ODOO_PYTHON ?= python3
ODOO_DB ?=
ODOO_POSTGRES ?= postgresql://odoo:odoo@127.0.0.1:5432
BENCH_ODOO := $(if $(ODOO),--odoo $(ODOO) --odoo-python $(ODOO_PYTHON) \
	--odoo-postgres $(ODOO_POSTGRES) $(if $(ODOO_DB),--odoo-db $(ODOO_DB)))
bench: build
	$(PY) bench/run.py --chart $(BENCH_CHART) $(BENCH_ODOO)

wheel: $(STAMP)
	VENV=$(VENV) bash scripts/build_wheels.sh

demo: build
	$(PY) demo/dashboard.py

# stubtest compares _native.pyi with the built module: it needs a fresh build.
lint: build
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check $(RUFF_PATHS)
	$(VENV)/bin/ruff format --check $(RUFF_PATHS)
	$(PY) -m mypy.stubtest ormcache_redis._native
	$(MAKE) --no-print-directory lint-addons

# OCA's linters on a copy of the addons per Odoo series (scripts/odoo_addons.py
# says why), and each README.rst up to date with its fragments.
lint-addons: $(STAMP)
	$(PY) scripts/odoo_addons.py lint

addon-readme: $(STAMP)
	$(PY) -m pip install --quiet --group readme
	$(PY) scripts/odoo_addons.py readme

fmt: $(STAMP)
	cargo fmt
	$(VENV)/bin/ruff check --fix $(RUFF_PATHS)
	$(VENV)/bin/ruff format $(RUFF_PATHS)

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
