"""The dashboard: confirmed sales per product category, and per salesperson
and month. About twenty SQL queries per computation on the demo data; the
same answer for every user of a company, so it is cached per company.

Plain ``odoo.tools.ormcache``: with ormcache_redis loaded server-wide the
entry is shared by every worker and server, computed once for the whole
cluster when many users arrive together (single flight: the method's
measured compute time is above the 20 ms threshold, or, as here, switched
on), and ``clear_cache`` clears this method only, everywhere, at commit.
"""

import logging

from odoo import api, models
from odoo.tools import ormcache

_logger = logging.getLogger(__name__)

# The benchmark counts these lines: one per computation, in every worker.
COMPUTED = "ormcache_redis_sale_dashboard: dashboard computed"

try:
    from ormcache_redis import set_single_flight
except ImportError:  # plain Odoo: nothing to switch on
    set_single_flight = None


class SaleDashboard(models.AbstractModel):
    _name = "ormcache_redis.sale.dashboard"
    _description = "Cached sales dashboard (ormcache_redis example)"

    @api.model
    def get_dashboard_data(self):
        categories, monthly = self._dashboard_rows(self.env.company.id)
        return {
            "categories": [
                {"category": name, "amount": amount, "quantity": quantity, "lines": lines}
                for name, amount, quantity, lines in categories
            ],
            "monthly": [
                {"salesperson": user, "month": month, "amount": amount}
                for user, month, amount in monthly
            ],
        }

    @ormcache("company_id")
    def _dashboard_rows(self, company_id):
        # Plain tuples of str/float/int: values every process can share.
        _logger.info("%s for company %s", COMPUTED, company_id)
        lines = self.env["sale.order.line"].sudo()
        categories = []
        for category in self.env["product.category"].sudo().search([], order="complete_name"):
            [(amount, quantity, count)] = lines._read_group(
                [
                    ("state", "=", "sale"),
                    ("company_id", "=", company_id),
                    ("product_id.categ_id", "child_of", category.id),
                ],
                aggregates=["price_subtotal:sum", "product_uom_qty:sum", "__count"],
            )
            categories.append((category.complete_name, amount or 0.0, quantity or 0.0, count))
        monthly = [
            (user.name or "", str(month), amount or 0.0)
            for user, month, amount in self.env["sale.order"]
            .sudo()
            ._read_group(
                [("state", "=", "sale"), ("company_id", "=", company_id)],
                groupby=["user_id", "date_order:month"],
                aggregates=["amount_total:sum"],
            )
        ]
        return tuple(categories), tuple(monthly)

    def _clear_dashboard(self):
        clear = getattr(type(self)._dashboard_rows, "clear_cache", None)
        if clear is not None:
            # ormcache_redis loaded: this method's entries only, in every
            # worker and server, when the transaction commits.
            clear(self)
        else:
            # Plain Odoo 17-19 has no per-method clear: the whole cache.
            self.env.registry.clear_cache()


if set_single_flight is not None:
    # One computation for the cluster even before its cost was measured.
    set_single_flight(SaleDashboard._dashboard_rows.__cache__.method, True)
