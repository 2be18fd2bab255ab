from . import test_sessions
