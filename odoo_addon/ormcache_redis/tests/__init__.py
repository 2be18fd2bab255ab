from . import test_decorator, test_sessions, test_wiring, test_workers
