"""``GET /ormcache_redis/metrics``: the cluster's figures in Prometheus's
text format, for the addresses or the token the options allow; 404 when
neither is configured (the default)."""

from odoo import http
from odoo.http import request
from werkzeug.exceptions import Forbidden, NotFound

from ormcache_redis.metrics.prometheus_text import CONTENT_TYPE

from .. import metrics_publishing


class OrmcacheRedisMetrics(http.Controller):
    @http.route(
        "/ormcache_redis/metrics",
        type="http",
        auth="none",
        methods=["GET"],
        csrf=False,
        save_session=False,
    )
    def ormcache_redis_metrics(self):
        access = metrics_publishing.access()
        if access is None or not access.open:
            raise NotFound()
        httprequest = request.httprequest
        if not access.allows(httprequest.remote_addr, httprequest.headers.get("Authorization")):
            raise Forbidden()
        return request.make_response(
            metrics_publishing.exposition_text(),
            headers=[("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")],
        )
