"""The suite pytest collects in a checkout: the packaged test, imported so that pytest finds it here too."""

from model_monitor.suite.test_endpoints import test_endpoint

__all__ = ["test_endpoint"]
