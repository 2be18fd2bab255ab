from . import metrics_route
