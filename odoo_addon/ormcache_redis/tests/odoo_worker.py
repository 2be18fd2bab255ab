"""A second Odoo process for the multi-process tests.

Started by test_workers.py and test_request_budget.py with the same Python
and Odoo options, as ``python -c BOOTSTRAP OPTIONS``: the bootstrap reads
Odoo's options and loads the server-wide modules (so this addon's post_load
hook runs, and an addon found through the addons path can be imported),
then ``serve`` opens the registry of the test database and serves commands
read as JSON lines on stdin. Each command runs like an Odoo request:
check_signaling, a new cursor, odoo.service.model.retrying (commit then
signal_changes, or reset_changes on error). Answers are JSON lines on stdout
prefixed with ``@@`` (Odoo logs go to stderr).
"""

import json
import sys
import time

import odoo
from odoo.service.model import retrying

from .. import runtime, stats_signal
from ..odoo_version import ODOO
from .probe import Probe

# What the process runs before this module can be imported: the addon is
# importable only once Odoo knows its addons path.
BOOTSTRAP = """
import json, sys
from odoo.tools import config
options = json.loads(sys.argv[1])
config.parse_config(options["odoo_args"])
from odoo.service import server
server.load_server_wide_modules()
from odoo.addons.ormcache_redis.tests.odoo_worker import serve
serve(options)
"""


def answer(payload):
    """One line of the protocol on stdout (not a log line: the test reads it)."""
    sys.stdout.write("@@" + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


class BudgetRecorder:
    """Stands for the Redis client in the shared tier of the registry: every
    call goes to the client, and what ``end_unit_budget`` answers (seconds
    spent on Redis, calls skipped) is kept for the "timed" command. The
    caches call the client directly; the budget is the thread's, so it is
    the same budget either way."""

    def __init__(self, client):
        self.client = client
        self.spent = None

    def attach(self, tier):
        if tier is not None and tier.client is not None and tier.client is not self:
            tier.client = self

    def end_unit_budget(self):
        answer = self.client.end_unit_budget()
        self.spent = list(answer) if answer is not None else None
        return answer

    def __getattr__(self, name):
        return getattr(self.client, name)


def serve(options):
    Registry = ODOO.registry_module().Registry
    db_name = options["db"]
    # The last request's unit of work, for the "timed" command: its length,
    # what the engine says its Redis budget spent (see BudgetRecorder) and
    # what the client counted meanwhile (its background threads included).
    last_unit = {}
    recorder = BudgetRecorder(runtime.client())

    def client_counts():
        client = runtime.client()
        stats = client.stats() if client is not None else {}
        return {
            name: value
            for name, value in stats.items()
            if isinstance(value, int) and not isinstance(value, bool)
        }

    def request(function):
        counts_before = client_counts()
        started = time.monotonic()
        registry = Registry(db_name).check_signaling()
        recorder.attach(runtime.tier_of(registry))
        recorder.spent = None
        try:
            with registry.cursor() as cr:
                env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
                return retrying(lambda: function(env), env)
        finally:
            # retrying ran signal_changes (commit) or reset_changes
            # (rollback): the unit of work and its budget ended.
            seconds = time.monotonic() - started
            counts = client_counts()
            last_unit.clear()
            last_unit.update(
                seconds=seconds,
                budget=recorder.spent,
                client={
                    name: counts[name] - counts_before.get(name, 0)
                    for name in counts
                    if counts[name] != counts_before.get(name, 0)
                },
            )

    def cache_of(env, bound_method):
        return env.registry._Registry__caches[bound_method.__cache__.cache_name]

    def counters(cache):
        stats = cache.stats()
        return {name: stats[name] for name in ("l1_hits", "l2_hits", "misses")}

    def get_param(env, key):
        model = env["ir.config_parameter"]
        cache = cache_of(env, model._get_param)
        before = counters(cache)
        value = model.get_param(key)
        after = counters(cache)
        return {"value": value, **{name: after[name] - before[name] for name in after}}

    def set_param(env, key, value):
        env["ir.config_parameter"].set_param(key, value)
        return True

    def set_param_then_fail(env, key, value):
        env["ir.config_parameter"].set_param(key, value)
        env["ir.config_parameter"].get_param(key)  # computed from uncommitted data
        raise RuntimeError("rolled back on purpose")

    def probe_read(env, key):
        probe = Probe(env)
        cache = cache_of(env, probe.read_param)
        before = counters(cache)
        value = probe.read_param(key)
        after = counters(cache)
        return {"value": value, **{name: after[name] - before[name] for name in after}}

    def probe_update(env, key, value):
        # Changes the row behind Odoo's back, then clears only that method.
        env.cr.execute("UPDATE ir_config_parameter SET value = %s WHERE key = %s", [value, key])
        probe = Probe(env)
        probe.read_param.clear_cache(probe)
        return dict(env.registry.cache_sequences)

    def category_colors(env):
        probe = Probe(env)
        cache = cache_of(env, probe.category_colors)
        before = counters(cache)
        value = probe.category_colors()
        after = counters(cache)
        return {
            "value": sorted(value.items()),
            **{name: after[name] - before[name] for name in after},
        }

    def category_create(env, values):
        return env["res.partner.category"].create(values).id

    def category_write(env, category_id, values, times=1):
        for _ in range(times):
            env["res.partner.category"].browse(category_id).write(values)
        return True

    def category_write_then_fail(env, category_id, values):
        env["res.partner.category"].browse(category_id).write(values)
        Probe(env).category_colors()  # computed from uncommitted data
        raise RuntimeError("rolled back on purpose")

    def category_unlink(env, category_id):
        env["res.partner.category"].browse(category_id).unlink()
        return True

    def plain_read(env, method_name, key):
        # A method cached with Odoo's plain ormcache (test_ormcache_redis).
        method = getattr(env["test.ormcache.redis.probe"], method_name)
        cache = cache_of(env, method)
        before = counters(cache)
        value = method(key)
        after = counters(cache)
        return {"value": value, **{name: after[name] - before[name] for name in after}}

    def plain_update(env, key, value):
        env.cr.execute("UPDATE ir_config_parameter SET value = %s WHERE key = %s", [value, key])
        probe = env["test.ormcache.redis.probe"]
        probe._read_param.clear_cache(probe)
        return True

    def plain_update_then_fail(env, key, value):
        plain_update(env, key, value)
        raise RuntimeError("rolled back on purpose")

    def signal_registry(env):
        env.registry.registry_invalidated = True
        return True

    def namespace(env, cache_name):
        return env.registry._Registry__caches[cache_name].namespace.decode()

    def sequences(env):
        return {"registry": env.registry.registry_sequence, **env.registry.cache_sequences}

    def tier_state(env, cache_name):
        tier = runtime.tier_of(env.registry)
        stats = env.registry._Registry__caches[cache_name].stats()
        stats.pop("methods", None)
        return {"counters": tier.counters, "cache": stats, "unverified": sorted(tier.unverified)}

    def flush(env):
        client = runtime.client()
        return client.flush(5.0) if client is not None else True

    def xmlid_lookup(env, xmlid):
        model = env["ir.model.data"]
        cache = cache_of(env, model._xmlid_lookup)
        before = counters(cache)
        value = model._xmlid_lookup(xmlid)
        after = counters(cache)
        return {"value": list(value), **{name: after[name] - before[name] for name in after}}

    def stats_text(env):
        # What kill -USR1 logs for this registry.
        return "\n".join(stats_signal.stats_lines(env.registry))

    def cache_settings(env):
        settings = runtime.installed_settings()
        return {"socket_timeout": settings.socket_timeout, "url": settings.url is not None}

    def use_budget(env, enabled):
        # For a measurement without the unit budget (the control of the
        # budget test): check_signaling then opens none.
        tier = runtime.tier_of(env.registry)
        if enabled:
            tier.__dict__.pop("begin_budget", None)
        else:
            tier.begin_budget = lambda: None
        return True

    commands = {
        "get_param": get_param,
        "set_param": set_param,
        "set_param_then_fail": set_param_then_fail,
        "probe_read": probe_read,
        "probe_update": probe_update,
        "plain_read": plain_read,
        "plain_update": plain_update,
        "plain_update_then_fail": plain_update_then_fail,
        "signal_registry": signal_registry,
        "category_colors": category_colors,
        "category_create": category_create,
        "category_write": category_write,
        "category_write_then_fail": category_write_then_fail,
        "category_unlink": category_unlink,
        "namespace": namespace,
        "sequences": sequences,
        "flush": flush,
        "tier_state": tier_state,
        "xmlid_lookup": xmlid_lookup,
        "stats_text": stats_text,
        "cache_settings": cache_settings,
        "use_budget": use_budget,
    }
    answer({"ok": True, "result": "ready"})
    for line in sys.stdin:
        command = json.loads(line)
        name, arguments = command["name"], command.get("args", [])
        # "timed": run a command, answer its result with the figures of its
        # unit of work (and without waiting for the deferred writes: with
        # Redis paused that wait is the writer's, not the request's).
        timed = name == "timed"
        if timed:
            name, arguments = arguments[0], arguments[1:]
        try:
            result = request(lambda env, n=name, a=arguments: commands[n](env, *a))
            if timed:
                result = {"result": result, **last_unit}
            elif name != "flush":
                # Deferred writes are queued at commit; wait until they are
                # sent so the other process can read them right away.
                client = runtime.client()
                if client is not None:
                    client.flush(5.0)
            reply = {"ok": True, "result": result}
        except Exception as error:
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        answer(reply)
