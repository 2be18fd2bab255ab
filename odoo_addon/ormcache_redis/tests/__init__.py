from . import (
    test_cached_values,
    test_decorator,
    test_dependencies,
    test_l1_memory,
    test_method_clear,
    test_metrics_route,
    test_native_lookup,
    test_odoo_version,
    test_registry_hooks,
    test_request_budget,
    test_sessions,
    test_workers,
)
