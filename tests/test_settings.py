"""Settings: one typed field per option, resolved flag > environment > ini > default, secrets held as Secret."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from model_monitor import settings
from model_monitor.redact import Secret
from model_monitor.settings import OPTIONS, Settings

FIELDS = {f.name for f in dataclasses.fields(Settings)} - {"only"}


def test_every_option_has_a_field_and_every_field_an_option() -> None:
    assert {option.dest for option in OPTIONS} == FIELDS


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.dest)
def test_an_options_default_fits_its_fields_type(option: settings.Option) -> None:
    assert isinstance(option.default, typing.get_type_hints(Settings)[option.dest])


def test_settings_are_frozen() -> None:
    resolved = Settings(**{option.dest: option.default for option in OPTIONS})
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.max_concurrency = 1  # type: ignore[misc]
