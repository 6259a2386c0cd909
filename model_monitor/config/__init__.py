"""Load endpoints.yaml once, validate it once, and turn it into frozen cases the rest of the code trusts.

    yaml_loader   text -> YAML nodes and data: strict loaders, bounded (MAX_FILE_BYTES, MAX_DEPTH, MAX_NODES)
    schema        endpoints.schema.json, its errors worded `endpoints[0].models[1].type: ...`
    document      the file read: lines of nodes, ${VAR} expansion, every problem collected (Problems)
    cases         one model entry -> one Case, with the checks the schema cannot make
    connection    an endpoint's URL, headers and API key, read from the environment when a request needs
                  them, each secret registered with the run's Redactor
    build         load(): read -> interpolate -> validate -> cases and connections -> Suite (and Discovery)
    discovery     GET /models for `discover: true` endpoints; each listed id becomes a case through Discovery

Each module imports only those above it; callers take what they need from here.
"""

from ..errors import MAX_LISTED, ConfigError
from .build import Discovery, Suite, load
from .connection import base_url
from .schema import SCHEMA_PATH
from .yaml_loader import MAX_DEPTH, FastStrictLoader, StrictLoader, compose

__all__ = [
    "MAX_DEPTH",
    "MAX_LISTED",
    "SCHEMA_PATH",
    "ConfigError",
    "Discovery",
    "FastStrictLoader",
    "StrictLoader",
    "Suite",
    "base_url",
    "compose",
    "load",
]
