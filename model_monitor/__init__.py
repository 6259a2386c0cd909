"""Model Monitor: synthetic checks for OpenAI-compatible model endpoints, run by pytest."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("model-monitor")
except PackageNotFoundError:  # run from a source tree that was not installed (the container image copies it)
    __version__ = "0+source"
