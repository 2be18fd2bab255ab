#!/usr/bin/env bash
# Builds the release artefacts into dist/: one abi3 wheel per Linux
# architecture for manylinux_2_17 (glibc 2.17+, so any current distribution
# and the official Odoo images), linked with zig from PyPI's `ziglang`
# package so no manylinux container is needed, plus the sdist. Each wheel
# must pass `auditwheel show` for its manylinux tag, and the wheel of this
# machine's architecture is installed in a fresh virtualenv and exercised.
#
#   VENV=.venv TARGETS="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu" \
#     bash scripts/build_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DIST=${DIST:-dist}
TARGETS=${TARGETS:-x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu}
PY="$VENV/bin/python"
# maturin finds zig through `python -m ziglang` of the python on PATH.
export PATH="$PWD/$VENV/bin:$PATH"

if ! "$PY" -c "import ziglang, auditwheel" 2>/dev/null; then
    echo "wheel: installing ziglang and auditwheel into $VENV"
    "$PY" -m pip install --quiet ziglang auditwheel
fi

rm -rf "$DIST"
mkdir -p "$DIST"

installed_targets=$(rustup target list --installed 2>/dev/null || rustc -vV | sed -n 's/^host: //p')
built=()
for target in $TARGETS; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        echo "wheel: adding the Rust target $target"
        if ! rustup target add "$target" >/dev/null 2>&1; then
            echo "wheel: SKIPPED $target: its standard library is not installed and 'rustup target add $target' failed" >&2
            continue
        fi
    fi
    echo "wheel: building $target (release, LTO: about 2 minutes)"
    maturin build --release --zig --compatibility manylinux2014 --target "$target" \
        --out "$DIST" 2>&1 | grep -v "^   Compiling "
    built+=("$target")
done
if [ ${#built[@]} -eq 0 ]; then
    echo "wheel: no wheel was built" >&2
    exit 1
fi

echo "wheel: building the sdist"
maturin sdist --out "$DIST" 2>&1 | grep -E "Built source distribution"

for wheel in "$DIST"/*.whl; do
    arch=$(sed -E 's/.*manylinux_2_17_([a-z0-9_]+)\.whl$/\1/' <<<"$wheel")
    report=$(auditwheel show "$wheel")
    if ! grep -q "\"manylinux_2_17_$arch\"" <<<"$report"; then
        echo "$report" >&2
        echo "wheel: $wheel is not manylinux_2_17_$arch" >&2
        exit 1
    fi
    echo "wheel: auditwheel: $(basename "$wheel") is consistent with manylinux_2_17_$arch"
done

host_arch=$(uname -m)
host_wheel=$(ls "$DIST"/*manylinux_2_17_"$host_arch".whl 2>/dev/null | head -1 || true)
if [ -z "$host_wheel" ]; then
    echo "wheel: no $host_arch wheel to try on this machine" >&2
    exit 1
fi
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The interpreter the venv was made from, not the venv itself: a fresh
# environment with nothing but the wheel.
base_python=$("$PY" -c "import sys; print(sys._base_executable)")
"$base_python" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --no-index "$host_wheel"
redis-server --port 0 --unixsocket "$scratch/redis.sock" --save "" --appendonly no \
    --daemonize yes --pidfile "$scratch/redis.pid" --logfile "$scratch/redis.log"
trap 'kill "$(cat "$scratch/redis.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$scratch"' EXIT
# Run from the scratch folder so the package comes from the venv, not python/.
(cd "$scratch" && "$scratch/venv/bin/python" "$repo/scripts/wheel_smoke.py" "unix://$scratch/redis.sock")
ls -l "$DIST"
