#!/usr/bin/env bash
# Builds the release artefacts into dist/:
# - one abi3 wheel of the ormcache_redis package per Linux architecture, for
#   manylinux_2_17 (glibc 2.17+, so any current distribution and the official
#   Odoo images), linked with zig from PyPI's `ziglang` package so no
#   manylinux container is needed; each must pass `auditwheel show`;
# - the sdist;
# - the addon's wheels, odoo-addon-ormcache_redis for Odoo 17.0, 18.0 and
#   19.0 (OCA's packaging: whool), from the one source tree with the series
#   written in each copy's manifest (scripts/odoo_addons.py stage), each
#   requiring the ormcache-redis built here and Odoo of its series.
# Then the wheel of this machine's architecture is installed, with its
# dependencies from the package registry, in a fresh virtualenv, which runs
# scripts/wheel_smoke.py: a value shared through a real Redis, and the
# commands `ormcache-redis --version` and `ormcache-redis doctor`.
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

if ! "$PY" -c "import ziglang, auditwheel, whool" 2>/dev/null; then
    echo "wheel: installing ziglang, auditwheel and whool into $VENV"
    "$PY" -m pip install --quiet ziglang auditwheel whool
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
# ormcache_redis-<version>-cp310-abi3-...: the addon requires exactly this engine.
engine_version=$(basename "$host_wheel" | cut -d- -f2)
repo=$PWD
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

addon_wheels=()
for series in $("$PY" scripts/odoo_addons.py series); do
    "$PY" scripts/odoo_addons.py stage "$series" "$scratch/addons/$series" \
        --addon ormcache_redis --engine-requirement "ormcache-redis==$engine_version" >/dev/null
    "$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$DIST" \
        "$scratch/addons/$series/ormcache_redis"
    # Absolute: the smoke test runs from the scratch folder.
    addon_wheels+=("$(realpath "$DIST"/odoo_addon_ormcache_redis-"$series".*.whl)")
    echo "wheel: built $(basename "${addon_wheels[-1]}")"
done

# The interpreter the venv was made from, not the venv itself: a fresh
# environment with nothing but the wheel and what it requires.
base_python=$("$PY" -c "import sys; print(sys._base_executable)")
"$base_python" -m venv "$scratch/venv"
echo "wheel: installing $(basename "$host_wheel") and its dependencies in a fresh virtualenv"
"$scratch/venv/bin/python" -m pip install --quiet "$host_wheel"
# Run from the scratch folder so the package comes from the venv, not python/.
(cd "$scratch" && "$scratch/venv/bin/python" "$repo/scripts/wheel_smoke.py" "${addon_wheels[@]}")
ls -l "$DIST"
