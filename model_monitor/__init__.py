"""Model Monitor: synthetic checks for OpenAI-compatible model endpoints, run by pytest."""

__all__ = ["__version__"]

__version__ = "0.1.0"
