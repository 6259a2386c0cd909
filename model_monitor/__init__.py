"""Model Monitor: synthetic checks for OpenAI-compatible model endpoints, run by pytest.

PYTEST_DONT_REWRITE: the model-monitor command imports this package before it starts pytest, which would then warn
that it cannot rewrite the asserts of a package that holds none.
"""

__all__ = ["USER_AGENT", "__version__"]

# The one version number: the package, the image tag and the chart (version and appVersion) are released under it.
# 2.0.0 continues the chart's numbering (its 1.x ran curl); a v<version> tag starts the release.
__version__ = "2.0.0"
# How every request we send names itself: probes, listings, pings and pushes.
USER_AGENT = f"model-monitor/{__version__}"
