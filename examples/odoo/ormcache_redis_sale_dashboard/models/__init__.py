from . import sale_dashboard, sale_order
