from odoo import http
from odoo.http import request


class SaleDashboardController(http.Controller):
    @http.route("/ormcache_redis_sale_dashboard/data", type="http", auth="user", methods=["GET"])
    def dashboard_data(self):
        data = request.env["ormcache_redis.sale.dashboard"].get_dashboard_data()
        return request.make_json_response(data)
