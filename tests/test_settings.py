"""Settings: one typed field per option, resolved flag > environment > ini > default, secrets held as Secret."""

from __future__ import annotations

import dataclasses
import re
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


# --- flag > environment variable > ini key > default, with a real pytest config ---

ENV = "MODEL_MONITOR_MAX_CONCURRENCY"


def resolved(pytester: pytest.Pytester, *flags: str, ini: str | None = None, env: str | None = None) -> Settings:
    if ini is not None:
        pytester.makeini(
            f"[pytest]\nmodel_monitor_max_concurrency = {ini}\nmodel_monitor_cronitor_url = https://ini/p/k\n"
        )
    config = pytester.parseconfig("-p", "model_monitor.entry", *flags)
    return settings.resolve(config, environ={} if env is None else {ENV: env, "CRONITOR_URL": "https://env/p/k"})


@pytest.mark.parametrize(
    ("flag", "env", "ini", "expected"),
    [
        (None, None, None, 100),
        (None, None, "3", 3),
        (None, "5", "3", 5),
        ("7", "5", "3", 7),
        ("7", None, None, 7),
        (None, "", "3", 3),  # an empty variable is no value
    ],
    ids=["default", "ini", "env-over-ini", "flag-over-all", "flag", "empty-env"],
)
def test_a_flag_beats_the_environment_which_beats_the_ini_file(
    pytester: pytest.Pytester, flag: str | None, env: str | None, ini: str | None, expected: int
) -> None:
    flags = [f"--max-concurrency={flag}"] if flag else []
    assert resolved(pytester, *flags, ini=ini, env=env).max_concurrency == expected


def test_a_secret_option_follows_the_same_order_and_stays_a_secret(pytester: pytest.Pytester) -> None:
    from_ini = resolved(pytester, ini="3").cronitor_url
    from_env = resolved(pytester, ini="3", env="5").cronitor_url
    from_flag = resolved(pytester, "--cronitor-url=https://flag/p/k", ini="3", env="5").cronitor_url
    assert [from_ini, from_env, from_flag] == [
        Secret("https://ini/p/k"),
        Secret("https://env/p/k"),
        Secret("https://flag/p/k"),
    ]


@pytest.mark.parametrize(
    ("flag", "env", "ini", "source"),
    [
        ("0", None, None, "--max-concurrency: invalid value '0'"),
        (None, "many", None, f"environment variable {ENV}: invalid value 'many'"),
        (None, None, "-1", "ini key model_monitor_max_concurrency: invalid value '-1'"),
    ],
    ids=["flag", "env", "ini"],
)
def test_a_bad_value_is_a_usage_error_naming_where_it_came_from(
    pytester: pytest.Pytester, flag: str | None, env: str | None, ini: str | None, source: str
) -> None:
    flags = [f"--max-concurrency={flag}"] if flag else []
    with pytest.raises(pytest.UsageError, match=re.escape(source)):
        resolved(pytester, *flags, ini=ini, env=env)


def test_an_env_only_option_is_read_from_the_environment_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmodel_monitor_cronitor_api_key = from-ini\n")
    config = pytester.parseconfig("-p", "model_monitor.entry")
    assert settings.resolve(config, environ={}).cronitor_api_key is None
    assert settings.resolve(config, environ={"CRONITOR_API_KEY": "from-env"}).cronitor_api_key == Secret("from-env")
