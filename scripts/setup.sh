#!/usr/bin/env bash
# Sets up a development/demo environment on a fresh Debian/Ubuntu machine that
# has Rust and Python 3.10+: redis-server (apt), a virtualenv with the build
# and test tools, and the extension built in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing redis-server and openssl with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server openssl >/dev/null
    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
        echo "setup: installing redis-server and openssl with sudo apt-get"
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server openssl >/dev/null
    else
        echo "setup: redis-server or openssl is missing; install them (e.g. 'apt-get install redis-server openssl') and run this again." >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust (https://rustup.rs) and run this again." >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The dependency groups of pyproject.toml (pip 25.1+).
"$VENV/bin/python" -m pip install --quiet --group dev --group test --group bench
PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release --quiet
echo "setup: done ($("$VENV/bin/python" -c 'import ormcache_redis; print("ormcache_redis", ormcache_redis.__version__)'))"
