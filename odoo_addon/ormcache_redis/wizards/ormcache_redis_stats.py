"""Settings > Technical > Parameters > ORM Cache (Redis): live figures of
the caches of the current registry, in the worker serving the request."""

from markupsafe import Markup, escape
from odoo import api, fields, models

from ormcache_redis import key_method, qualified_name
from ormcache_redis.stats import MIB, l1_memory_text

from .. import runtime
from ..odoo_version import ODOO


def _method_name(key) -> str | None:
    method = key_method(key)
    return qualified_name(method) if method is not None else None


def _ratio(hits: int, lookups: int) -> str:
    return f"{100.0 * hits / lookups:.1f}%" if lookups else "-"


class OrmcacheRedisStats(models.TransientModel):
    _name = "ormcache.redis.stats"
    _description = "ORM cache statistics (this worker)"

    redis_address = fields.Char(readonly=True)
    redis_health = fields.Char(readonly=True)
    redis_latency_ms = fields.Float("Redis round trip (ms)", digits=(16, 3), readonly=True)
    report = fields.Html(sanitize=False, readonly=True)
    cache_to_clear = fields.Selection(
        selection="_selection_cache_to_clear",
        help="Clears this cache the way registry.clear_cache() does: here, and in every "
        "worker and server through the database's signaling.",
    )

    @api.model
    def _selection_cache_to_clear(self):
        return [(name, name) for name in ODOO.registry_module()._CACHES_BY_KEY]

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        values.update(self._collect())
        return values

    @api.model
    def _collect(self) -> dict:
        client = runtime.client()
        address, health, latency = "-", "not configured (L1 only)", 0.0
        if client is not None:
            address = client.address
            try:
                latency = client.ping() * 1000.0
                health = f"healthy ({client.state})"
                stats = client.stats()
                # Sentinel and Cluster: which master answers, and how often
                # the client had to follow a new one.
                if stats.get("node") and stats["node"] != address:
                    health += f", master {stats['node']}"
                if stats.get("failovers"):
                    health += f", {stats['failovers']} failover(s) followed"
            except Exception as error:
                health = f"unreachable ({client.state}): {error}"
        return {
            "redis_address": address,
            "redis_health": health,
            "redis_latency_ms": latency,
            "report": self._report(),
        }

    @api.model
    def _report(self) -> Markup:
        registry = self.env.registry
        caches = registry._Registry__caches
        rows = []
        for cache_name, cache in caches.items():
            stats = cache.stats() if hasattr(cache, "stats") else {}
            entries: dict[str, int] = {}
            for key in ODOO.lru_snapshot(cache):
                name = _method_name(key) or "?"
                entries[name] = entries.get(name, 0) + 1
            l1, l2, miss = stats.get("l1_hits", 0), stats.get("l2_hits", 0), stats.get("misses", 0)
            shared = bool(stats.get("shared")) and getattr(cache, "client", None) is not None
            rows.append(
                (
                    True,
                    cache_name,
                    f"{len(cache)} / {cache.count}, {stats.get('bytes', 0) / MIB:.1f} MiB",
                    l1,
                    l2,
                    miss,
                    _ratio(l1 + l2, l1 + l2 + miss),
                    "shared" if shared else "local",
                    f"p50 {stats.get('redis_latency_p50_us', 0)} us, "
                    f"p99 {stats.get('redis_latency_p99_us', 0)} us",
                )
            )
            methods = stats.get("methods") or {}
            for method_name in sorted(set(methods) | set(entries)):
                figures = methods.get(method_name, {})
                l1, l2, miss = (
                    figures.get("l1_hits", 0),
                    figures.get("l2_hits", 0),
                    figures.get("misses", 0),
                )
                rows.append(
                    (
                        False,
                        method_name,
                        str(entries.get(method_name, 0)),
                        l1,
                        l2,
                        miss,
                        _ratio(l1 + l2, l1 + l2 + miss),
                        "local" if method_name in getattr(cache, "local_methods", ()) else "",
                        "",
                    )
                )
        header = (
            "Cache / method",
            "Entries",
            "L1 hits",
            "L2 hits",
            "Misses",
            "Hit ratio",
            "Tier",
            "Redis latency",
        )
        html = [Markup('<table class="table table-sm o_ormcache_redis_report"><thead><tr>')]
        html += [Markup("<th>%s</th>") % title for title in header]
        html.append(Markup("</tr></thead><tbody>"))
        for is_cache, *cells in rows:
            style = Markup(' class="fw-bold table-light"') if is_cache else Markup("")
            html.append(Markup("<tr%s>") % style)
            html += [Markup("<td>%s</td>") % escape(cell) for cell in cells]
            html.append(Markup("</tr>"))
        html.append(Markup("</tbody></table>"))
        html.append(Markup("<p>%s</p>") % l1_memory_text())
        tier = runtime.tier_of(registry)
        if tier is not None:
            html.append(
                Markup("<p>Registry r%s, signaling %s, suspended: %s, counters: %s</p>")
                % (tier.registry_sequence, tier.sequences, tier.unverified or "none", tier.counters)
            )
        return Markup("").join(html)

    def action_refresh(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "view_mode": "form",
            "target": "current",
        }

    def action_clear_cache(self):
        self.ensure_one()
        if self.cache_to_clear:
            self.env.registry.clear_cache(self.cache_to_clear)
        return self.action_refresh()
