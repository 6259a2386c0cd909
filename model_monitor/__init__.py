"""Model Monitor: synthetic checks for OpenAI-compatible model endpoints, run by pytest.

PYTEST_DONT_REWRITE: the model-monitor command imports this package before it starts pytest, which would then warn
that it cannot rewrite the asserts of a package that holds none.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
