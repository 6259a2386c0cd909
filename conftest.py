"""Registers the Model Monitor plugin; everything else lives in model_monitor/ (checks/ is the suite pytest
collects)."""

pytest_plugins = ["model_monitor.entry"]
