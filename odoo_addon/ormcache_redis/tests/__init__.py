from . import test_wiring
from . import test_decorator
from . import test_multiprocess
