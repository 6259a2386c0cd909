"""requirements.lock, the image's pinned dependencies, covers pyproject.toml's and can be installed with hashes.

The Dockerfile installs the lock with `pip install --require-hashes` and the package with `--no-deps`: a dependency
added to pyproject.toml but missing from the lock, or locked outside its range, would be missing or wrong in the
image. `./dev lock` rewrites the lock; these tests say when it is due.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .helpers import ROOT

LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==")
OURSELVES = "model-monitor (pyproject.toml)"  # how uv names a requirement pyproject.toml itself asks for


def entries() -> dict[str, str]:
    """Each locked distribution's canonical name -> its entry: the pin, its hashes and the `# via` lines."""
    found: dict[str, str] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match["name"])
            found[name] = ""
        if name is not None:  # the header's comments come before the first pin
            found[name] += line + "\n"
    return found


def pins() -> dict[str, Version]:
    """Each locked distribution's canonical name -> its pinned version."""
    return {name: Version(entry.split("==", 1)[1].split()[0]) for name, entry in entries().items()}


IMAGE_EXTRAS = ("otlp",)  # ./dev lock locks them with the base: the image exports OTLP metrics


def dependencies() -> list[Requirement]:
    """What the image installs: the base dependencies and its extras'."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [text for extra in IMAGE_EXTRAS for text in project["optional-dependencies"][extra]]
    return [Requirement(text) for text in project["dependencies"] + extras]


def test_every_dependency_is_locked_inside_its_range() -> None:
    locked = pins()
    for requirement in dependencies():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock: run ./dev lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside pyproject.toml's {requirement}: run ./dev lock"
        )


def test_every_pin_has_a_hash() -> None:
    unhashed = [name for name, entry in entries().items() if "--hash=sha256:" not in entry]
    assert not unhashed, f"pip install --require-hashes would refuse these: {unhashed}"


def test_every_pin_is_wanted_by_pyproject_or_another_pin() -> None:
    """No stale entries: each pin is there for pyproject.toml or for another locked distribution."""
    locked = entries()
    ours = {canonicalize_name(requirement.name) for requirement in dependencies()}
    for name, entry in locked.items():
        # uv writes `# via aiohttp`, or `# via` and then one `#   name` line for each.
        comments = [line.strip("# ") for line in entry.splitlines() if line.lstrip().startswith("#")]
        wanted_by = [who for who in (text.removeprefix("via").strip() for text in comments) if who]
        assert wanted_by, f"{name} says nothing about what wants it: rewrite the lock with ./dev lock"
        for who in wanted_by:
            if who == OURSELVES:
                assert name in ours, f"the lock says pyproject.toml wants {name}, which it no longer lists: ./dev lock"
            else:
                assert canonicalize_name(who) in locked, f"{name} is locked for {who}, which is not: ./dev lock"
