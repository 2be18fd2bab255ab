#!/usr/bin/env bash
# Runs the ormcache_redis addon's Odoo tests (and optional extra test tags)
# against a real Odoo source tree, a real PostgreSQL and a real Redis.
#
#   scripts/run_odoo_tests.sh ODOO_TREE PYTHON DB_URL [EXTRA_TEST_TAGS]
#
#   ODOO_TREE  an Odoo 17.0/18.0/19.0 source tree (the directory with odoo-bin)
#   PYTHON     a Python with Odoo's requirements and the ormcache_redis wheel
#   DB_URL     postgresql://user:password@host:port[/prefix]; a throwaway
#              database named <prefix or ocr_test>_<random> is created and
#              dropped at the end (KEEP_DB=1 keeps it)
#   EXTRA_TEST_TAGS  e.g. '/base:TestOrmcache,/base:TestHasGroup'
#
# Environment: EXTRA_ADDONS_PATH (comma-separated, appended to the addons
# path), REDIS_SERVER (redis-server binary), KEEP_DB=1, WITH_DEMO=0/1,
# INSTALL (modules installed in the throwaway database, default
# base,ormcache_redis,test_ormcache_redis: the last holds the test models),
# ADDON=source (default: odoo_addon/ of this checkout on the addons path)
# or ADDON=installed (the addon pip installed in PYTHON's environment, from
# its wheel odoo-addon-ormcache_redis: found under odoo/addons, with no
# addons path entry; only test_ormcache_redis comes from this checkout).
# It starts its own redis-server on a free port, loads the addon as a
# server-wide module, prints the pass counts and exits non-zero on failure.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,23p' "$0" >&2
    exit 2
fi
ODOO_TREE=$(cd "$1" && pwd)
PYTHON=$2
DB_URL=$3
EXTRA_TAGS=${4:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
ADDON_PARENT="$HERE/odoo_addon"
REDIS_SERVER=${REDIS_SERVER:-redis-server}

ADDON=${ADDON:-source}
[[ -x "$ODOO_TREE/odoo-bin" ]] || { echo "no odoo-bin in $ODOO_TREE" >&2; exit 2; }
[[ "$ADDON" == source || "$ADDON" == installed ]] || { echo "ADDON is source or installed" >&2; exit 2; }
command -v "$REDIS_SERVER" >/dev/null || { echo "redis-server not found" >&2; exit 2; }
"$PYTHON" -c "import ormcache_redis._native" || { echo "$PYTHON cannot import ormcache_redis" >&2; exit 2; }

# Everything parsed in Python: no credentials in `ps` beyond what odoo-bin takes.
eval "$("$PYTHON" - "$DB_URL" "$ODOO_TREE" <<'EOF'
import shlex, socket, sys, uuid
from urllib.parse import urlsplit, unquote
url = urlsplit(sys.argv[1])
if url.scheme not in ("postgresql", "postgres"):
    sys.exit("DB_URL must be postgresql://user:password@host:port[/prefix]")
def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
release = {}
exec(open(f"{sys.argv[2]}/odoo/release.py").read(), release)
prefix = url.path.strip("/") or "ocr_test"
values = {
    "DB_HOST": url.hostname or "", "DB_PORT": str(url.port or 5432),
    "DB_USER": unquote(url.username or ""), "DB_PASSWORD": unquote(url.password or ""),
    "DB_NAME": f"{prefix}_{uuid.uuid4().hex[:8]}", "REDIS_PORT": str(port()),
    "HTTP_PORT": str(port()), "ODOO_MAJOR": str(release["version_info"][0]),
}
for name, value in values.items():
    print(f"{name}={shlex.quote(value)}")
EOF
)"

WORKDIR=$(mktemp -d -t ormcache_redis_tests.XXXXXX)
LOG="$WORKDIR/odoo.log"
cleanup() {
    if [[ -n "${REDIS_PID:-}" ]]; then kill "$REDIS_PID" 2>/dev/null || true; fi
    if [[ "${KEEP_DB:-0}" != 1 ]]; then
        DB_HOST=$DB_HOST DB_PORT=$DB_PORT DB_USER=$DB_USER DB_PASSWORD=$DB_PASSWORD \
        "$PYTHON" - "$DB_NAME" <<'EOF' || true
import os, sys, psycopg2
con = psycopg2.connect(host=os.environ["DB_HOST"], port=os.environ["DB_PORT"],
                       user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"], dbname="postgres")
con.autocommit = True
con.cursor().execute(f'DROP DATABASE IF EXISTS "{sys.argv[1]}" WITH (FORCE)')
EOF
        rm -rf "$HOME/.local/share/Odoo/filestore/$DB_NAME"
    fi
    echo "log: $LOG"
}
trap cleanup EXIT

"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORKDIR" >"$WORKDIR/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
    "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $REDIS_PORT), 0.2)" \
        2>/dev/null && break
    sleep 0.1
done

# Where Odoo would import an installed addon from: the odoo.addons namespace
# of PYTHON's environment, as odoo-bin sets it up from this tree. It comes
# before any addons path entry, so it would shadow odoo_addon/.
INSTALLED=$("$PYTHON" - "$ODOO_TREE" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
import odoo.addons
found = [p for p in odoo.addons.__path__ if os.path.isfile(os.path.join(p, "ormcache_redis", "__manifest__.py"))]
print(os.path.join(found[0], "ormcache_redis") if found else "")
EOF
)
if [[ "$ADDON" == installed ]]; then
    [[ -n "$INSTALLED" ]] || { echo "$PYTHON has no odoo/addons/ormcache_redis: pip install the odoo-addon-ormcache_redis wheel of this series" >&2; exit 2; }
    # The test models' addon alone from this checkout, so the one under
    # test cannot come from odoo_addon/.
    ADDON_PARENT="$WORKDIR/addons"
    mkdir -p "$ADDON_PARENT"
    ln -s "$HERE/odoo_addon/test_ormcache_redis" "$ADDON_PARENT/test_ormcache_redis"
    echo "addon: $INSTALLED (installed)"
elif [[ -n "$INSTALLED" ]]; then
    echo "$PYTHON has the addon installed ($INSTALLED): it would be tested instead of odoo_addon/; run with ADDON=installed or uninstall odoo-addon-ormcache_redis" >&2
    exit 2
fi
ADDONS="$ODOO_TREE/odoo/addons,$ODOO_TREE/addons,$ADDON_PARENT${EXTRA_ADDONS_PATH:+,$EXTRA_ADDONS_PATH}"
LOAD="base,web"
if [[ -d "$ODOO_TREE/addons/rpc" || -d "$ODOO_TREE/odoo/addons/rpc" ]]; then LOAD="base,rpc,web"; fi
LOAD="$LOAD,ormcache_redis"
TAGS="/ormcache_redis${EXTRA_TAGS:+,$EXTRA_TAGS}"
DEMO_ARGS=()
if [[ "$ODOO_MAJOR" -ge 19 && "${WITH_DEMO:-1}" == 1 ]]; then DEMO_ARGS=(--with-demo); fi
if [[ "$ODOO_MAJOR" -lt 19 && "${WITH_DEMO:-1}" == 0 ]]; then DEMO_ARGS=(--without-demo=all); fi

echo "Odoo $ODOO_MAJOR, database $DB_NAME, redis 127.0.0.1:$REDIS_PORT, tags $TAGS"
set +e
ORMCACHE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
"$PYTHON" "$ODOO_TREE/odoo-bin" -c /dev/null \
    --db_host "$DB_HOST" --db_port "$DB_PORT" --db_user "$DB_USER" --db_password "$DB_PASSWORD" \
    --addons-path "$ADDONS" --load "$LOAD" -d "$DB_NAME" -i "${INSTALL:-base,ormcache_redis,test_ormcache_redis}" \
    "${DEMO_ARGS[@]}" --test-tags "$TAGS" --stop-after-init \
    --http-interface 127.0.0.1 --http-port "$HTTP_PORT" --log-level info >"$LOG" 2>&1
RC=$?
set -e

# Odoo's own summary lines, then the failures.
grep -E "odoo.tests.stats|tests when loading database|Ran [0-9]+ tests|post-tests in" "$LOG" \
    | sed -E 's/^[0-9-]+ [0-9:,]+ [0-9]+ //' || true
FAILURES=$(grep -cE "^[0-9-]+ [0-9:,]+ [0-9]+ (ERROR|CRITICAL) .*(FAIL|ERROR):|Traceback" "$LOG" || true)
SUMMARY=$(grep -E "[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests" "$LOG" | tail -1 || true)
echo "${SUMMARY:-no test summary line}" | sed -E 's/^[0-9-]+ [0-9:,]+ [0-9]+ //'
if [[ $RC -ne 0 || -z "$SUMMARY" ]] || ! grep -qE " 0 failed, 0 error\(s\)" <<<"$SUMMARY"; then
    grep -E "(ERROR|CRITICAL|FAIL)" "$LOG" | head -40 >&2 || true
    echo "FAILED (odoo-bin exit $RC, $FAILURES error lines)" >&2
    exit 1
fi
echo "PASSED"
