from . import models
from .decorator import ormcache


def post_load():
    # Runs once in the process that loads server-wide modules, before any
    # registry is built and before workers fork.
    from . import wiring

    wiring.install()
