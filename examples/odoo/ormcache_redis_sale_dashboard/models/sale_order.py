from odoo import models


class SaleOrder(models.Model):
    _inherit = "sale.order"

    def action_confirm(self):
        result = super().action_confirm()
        self.env["ormcache_redis.sale.dashboard"]._clear_dashboard()
        return result
