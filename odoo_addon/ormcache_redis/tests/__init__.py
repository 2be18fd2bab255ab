from . import test_decorator, test_wiring, test_workers
