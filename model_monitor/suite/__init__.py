"""The suite: the one parametrized test that pytest collects, shipped in the package so that the installed command
runs it (checks/ in a checkout imports it from here)."""

from pathlib import Path

__all__ = ["SUITE_DIR"]

SUITE_DIR = Path(__file__).resolve().parent
