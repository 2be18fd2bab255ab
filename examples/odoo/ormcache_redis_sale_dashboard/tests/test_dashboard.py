from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestSaleDashboard(TransactionCase):
    def test_confirming_an_order_shows_on_the_dashboard(self):
        dashboard = self.env["ormcache_redis.sale.dashboard"]
        category = self.env["product.category"].search([], order="complete_name", limit=1)
        product = self.env["product.product"].create(
            {"name": "Dashboard probe", "list_price": 7.0, "categ_id": category.id}
        )
        order = self.env["sale.order"].create(
            {
                "partner_id": self.env["res.partner"].create({"name": "Probe"}).id,
                "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 3})],
            }
        )

        def category_amount():
            data = dashboard.get_dashboard_data()
            [amount] = [
                r["amount"] for r in data["categories"] if r["category"] == category.complete_name
            ]
            return amount

        before = category_amount()
        self.assertEqual(category_amount(), before)  # served from the cache
        order.action_confirm()
        self.assertAlmostEqual(category_amount(), before + order.amount_untaxed)
