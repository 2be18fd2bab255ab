from . import cached_compute, probe
