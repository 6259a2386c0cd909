"""Registers the Model Monitor plugin; everything else lives in checks/."""

pytest_plugins = ["checks.plugin"]
