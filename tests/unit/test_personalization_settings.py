"""The OPENAI_* settings of AI personalization: off without a key, read as named, the key never shown."""

from __future__ import annotations

import pytest

from entrypoints.settings import Settings, SettingsError

KEY = "sk-proj-CanaryKey0123456789abcdef"


def test_personalization_is_off_without_a_key() -> None:
    """With an empty environment nothing is personalized; the model defaults to a current small one."""
    settings = Settings.from_env({})
    assert settings.openai_api_key is None
    assert settings.describe()["personalization"] == "off"
    assert settings.openai_model == "gpt-5.4-mini"


def test_openai_variables_are_read_and_the_key_is_never_shown() -> None:
    """Each OPENAI_* variable lands in its setting; neither repr() nor describe() shows the key."""
    settings = Settings.from_env(
        {
            "OPENAI_API_KEY": KEY,
            "OPENAI_MODEL": "gpt-4.1-mini",
            "OPENAI_BASE_URL": "http://127.0.0.1:7901/v1",
            "OPENAI_TIMEOUT_SECONDS": "2.5",
            "OPENAI_DAILY_REQUESTS_PER_ORG": "20",
            "OPENAI_DAILY_TOKENS_PER_ORG": "9000",
        }
    )
    assert (settings.openai_api_key, settings.openai_model, settings.openai_base_url) == (
        KEY,
        "gpt-4.1-mini",
        "http://127.0.0.1:7901/v1",
    )
    assert settings.openai_timeout_seconds == 2.5
    assert (settings.openai_daily_requests_per_org, settings.openai_daily_tokens_per_org) == (20, 9000)
    assert settings.describe()["personalization"] == "gpt-4.1-mini"
    assert KEY not in repr(settings) + repr(settings.describe())


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OPENAI_BASE_URL": "ftp://gateway"}, "OPENAI_BASE_URL"),
        ({"OPENAI_TIMEOUT_SECONDS": "soon"}, "OPENAI_TIMEOUT_SECONDS"),
        ({"OPENAI_DAILY_REQUESTS_PER_ORG": "-1"}, "OPENAI_DAILY_REQUESTS_PER_ORG"),
        ({"OPENAI_DAILY_TOKENS_PER_ORG": "lots"}, "OPENAI_DAILY_TOKENS_PER_ORG"),
    ],
)
def test_bad_openai_values_name_the_variable(env: dict[str, str], named: str) -> None:
    """A value that cannot be used fails at start-up naming its variable."""
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
